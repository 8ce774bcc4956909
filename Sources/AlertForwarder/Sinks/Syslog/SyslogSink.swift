import DefenderAPI
import Foundation
import OrderedJSON

/// What the MSG part of a syslog message holds.
public enum SyslogBodyFormat: String, Sendable, CaseIterable {
    /// The alert JSON exactly as Defender returned it.
    case json
    /// A CEF line (`CEFMessage`).
    case cef
}

/// Everything a `syslog` sink needs.
public struct SyslogSettings: Sendable, Equatable {
    public var address: SyslogAddress
    /// Protocol, facility, host and app names, enterprise number.
    public var message: SyslogMessage
    public var format: SyslogBodyFormat
    /// CEF only: the whole alert in `cs6`.
    public var cefAlertJSON: Bool
    /// TCP and TLS only.
    public var framing: SyslogFraming
    /// A message longer than this (bytes) is refused and becomes a dead letter.
    public var maxMessageSize: Int
    /// Connecting, writing, and waiting for a RELP answer each give up after this long.
    public var timeout: Duration
    /// `tls://` only.
    public var tls: SyslogTLS?
    /// `tcp://` and `tls://`: how long the connection must stay open after alerts were written
    /// before they count as delivered (a receiver that resets it meanwhile gets them again).
    /// Not a configuration key: tests shorten or lengthen it.
    public var settle: Duration = .milliseconds(100)
    /// `format = "json"`: the record's shape (ECS, OCSF, evidence split); one message per
    /// document.
    public var shape: RecordShape = .native

    public init(
        address: SyslogAddress, message: SyslogMessage, format: SyslogBodyFormat = .json, cefAlertJSON: Bool = false,
        framing: SyslogFraming = .octetCounting, maxMessageSize: Int = 65_536, timeout: Duration = .seconds(30), tls: SyslogTLS? = nil
    ) {
        self.address = address
        self.message = message
        self.format = format
        self.cefAlertJSON = cefAlertJSON
        self.framing = framing
        self.maxMessageSize = maxMessageSize
        self.timeout = timeout
        self.tls = tls
    }

    /// What to tell the operator when the alerts would cross the network in clear text:
    /// `udp://`, `tcp://` or `relp://` (which this sink speaks without TLS) to a host that is not
    /// this machine; nil for `tls://` and for loopback (decided by address, see `Loopback`).
    public var plaintextWarning: String? {
        guard address.transport != .tls, !Loopback.isLoopback(host: address.host) else { return nil }
        return "\(address) is not this machine and \(address.transport.rawValue):// carries the alerts in clear text: anyone on the path can read "
            + "them (devices, users, titles) and forge or drop messages; use tls:// unless the network between is trusted"
    }

    /// The largest UDP payload over IPv4 (65,535 − 8 bytes of UDP header − 20 of IP header).
    public static let datagramLimit = 65_507

    /// The size above which a message is refused: `maxMessageSize`, and for UDP never more
    /// than a datagram holds.
    public var messageLimit: Int {
        address.transport == .udp ? min(maxMessageSize, Self.datagramLimit) : maxMessageSize
    }
}

/// Alerts to a syslog receiver (a SIEM's collector, an rsyslog or syslog-ng relay) over UDP,
/// TCP, TLS or RELP, one message per alert. A message longer than the limit is never cut: it
/// is refused, logged and kept as a dead letter, and the rest of the batch goes on.
public final class SyslogSink: AlertSink {
    public let settings: SyslogSettings
    private let transport: any SyslogTransport

    public init(settings: SyslogSettings) {
        self.settings = settings
        let address = settings.address
        transport =
            switch address.transport {
            case .udp: DatagramTransport(host: address.host, port: address.port)
            case .tcp: StreamTransport(address: address, framing: settings.framing, tls: nil, timeout: settings.timeout, settle: settings.settle)
            case .tls:
                StreamTransport(
                    address: address, framing: settings.framing, tls: settings.tls ?? SyslogTLS(), timeout: settings.timeout,
                    settle: settings.settle)
            case .relp: RELPTransport(address: address, timeout: settings.timeout)
            }
    }

    public func send(_ records: [OutboxRecord]) async throws(SinkError) -> [SinkRejection] {
        var messages: [[UInt8]] = []
        messages.reserveCapacity(records.count)
        // The index in `records` of each message (a split record has several).
        var sent: [Int] = []
        sent.reserveCapacity(records.count)
        var rejected: [SinkRejection] = []
        let limit = settings.messageLimit
        for (index, record) in records.enumerated() {
            guard let recordMessages = self.messages(for: record) else {
                rejected.append(settings.shape.refusal(of: record))
                continue
            }
            // A record is sent whole or not at all: one message over the limit refuses it.
            if let longest = recordMessages.map(\.count).max(), longest > limit {
                let rule =
                    settings.address.transport == .udp && limit < settings.maxMessageSize
                    ? "the most a UDP datagram holds" : "max_message_size"
                rejected.append(
                    SinkRejection(recordID: record.id, reason: "the syslog message is \(longest) bytes, over \(rule) (\(limit) bytes); it is not cut")
                )
                continue
            }
            messages += recordMessages
            sent += Array(repeating: index, count: recordMessages.count)
        }
        guard !messages.isEmpty else { return rejected }
        let refused: [Int: String]
        do throws(SyslogSendFailure) {
            refused = try await transport.send(messages)
        } catch {
            // What the receiver took or refused before the failure, and the over-size records
            // among and right after it, are settled: the worker confirms them. The record of the
            // first message not answered is not, even if some of its messages were: it is sent
            // again whole.
            let settled = sent.indices.contains(error.answered) ? sent[error.answered] : records.count
            var sinkError = error.error
            sinkError.confirmedPrefix = settled
            let prefix = Set(records[..<settled].map(\.id))
            sinkError.rejectedInPrefix =
                rejected.filter { prefix.contains($0.recordID) }
                + refusals(error.refused, records: records, sent: sent).filter { prefix.contains($0.recordID) }
            throw sinkError
        }
        return rejected + refusals(refused, records: records, sent: sent)
    }

    /// The receiver's refusals (by message index) as rejections of the records, one per record.
    private func refusals(_ refused: [Int: String], records: [OutboxRecord], sent: [Int]) -> [SinkRejection] {
        var seen = Set<Int>()
        return refused.sorted { $0.key < $1.key }.compactMap { refusal in
            guard sent.indices.contains(refusal.key), seen.insert(sent[refusal.key]).inserted else { return nil }
            return SinkRejection(recordID: records[sent[refusal.key]].id, reason: "the syslog receiver refused the message: \(refusal.value)")
        }
    }

    /// The whole syslog message (header, structured data, MSG) for a record of one message
    /// (the first, when evidence is split; empty when it cannot be shaped): what tests compare.
    func message(for record: OutboxRecord) -> [UInt8] {
        messages(for: record)?.first ?? []
    }

    /// The record's messages: one, or one per evidence entity with `evidence = "split"`; nil
    /// when it cannot be shaped (not JSON).
    func messages(for record: OutboxRecord) -> [[UInt8]]? {
        switch settings.format {
        case .cef:
            return [settings.message.bytes(for: record, body: Array(CEFMessage.line(for: record, includeJSON: settings.cefAlertJSON).utf8))]
        case .json:
            // Unsafe characters inside the JSON's strings written `\uXXXX`: the same JSON value.
            return settings.shape.documents(for: record)?.map { settings.message.bytes(for: record, body: PrintableText.escapedJSON($0)) }
        }
    }

    public func shutdown() async {
        await transport.shutdown()
    }
}
