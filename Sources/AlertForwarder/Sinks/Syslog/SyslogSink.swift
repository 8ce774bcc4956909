import Foundation

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

    public init(address: SyslogAddress, message: SyslogMessage, format: SyslogBodyFormat = .json, cefAlertJSON: Bool = false,
                framing: SyslogFraming = .octetCounting, maxMessageSize: Int = 65_536, timeout: Duration = .seconds(30), tls: SyslogTLS? = nil) {
        self.address = address
        self.message = message
        self.format = format
        self.cefAlertJSON = cefAlertJSON
        self.framing = framing
        self.maxMessageSize = maxMessageSize
        self.timeout = timeout
        self.tls = tls
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
        transport = switch address.transport {
        case .udp: DatagramTransport(host: address.host, port: address.port)
        case .tcp: StreamTransport(address: address, framing: settings.framing, tls: nil, timeout: settings.timeout)
        case .tls: StreamTransport(address: address, framing: settings.framing, tls: settings.tls ?? SyslogTLS(), timeout: settings.timeout)
        case .relp: RELPTransport(address: address, tls: nil, timeout: settings.timeout)
        }
    }

    public func send(_ records: [OutboxRecord]) async throws(SinkError) -> [SinkRejection] {
        var messages: [[UInt8]] = []
        messages.reserveCapacity(records.count)
        var rejected: [SinkRejection] = []
        let limit = settings.messageLimit
        for record in records {
            let message = message(for: record)
            guard message.count <= limit else {
                let rule = settings.address.transport == .udp && limit < settings.maxMessageSize
                    ? "the most a UDP datagram holds" : "max_message_size"
                rejected.append(SinkRejection(recordID: record.id, reason: "the syslog message is \(message.count) bytes, over \(rule) (\(limit) bytes); it is not cut"))
                continue
            }
            messages.append(message)
        }
        if !messages.isEmpty { try await transport.send(messages) }
        return rejected
    }

    /// The whole syslog message (header, structured data, MSG) for one alert.
    func message(for record: OutboxRecord) -> [UInt8] {
        let body: [UInt8] = switch settings.format {
        case .json: record.payloadBytes
        case .cef: Array(CEFMessage.line(for: record, includeJSON: settings.cefAlertJSON).utf8)
        }
        return settings.message.bytes(for: record, body: body)
    }

    public func shutdown() async {
        await transport.shutdown()
    }
}
