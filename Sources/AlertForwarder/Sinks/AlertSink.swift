import DefenderAPI
import OrderedJSON

/// Why a sink did not take a batch. Its alerts stay in the outbox and are sent again.
public struct SinkError: Error, Sendable, CustomStringConvertible {
    /// Whether sending the same batch again can succeed without an operator.
    public enum Kind: Sendable, Equatable {
        /// A passing fault: the receiver is down, busy or slow, the network broke, the disk is
        /// full. Retried with the normal back-off.
        case retryable
        /// The receiver refused the whole batch for a reason only a person can fix (a wrong
        /// token, URL or certificate, a file that may not be written). Still retried, with a
        /// long back-off, and never turned into dead letters: the records are not at fault.
        case needsOperator
    }

    public var description: String
    public var kind: Kind
    /// The receiver asked to wait this long (HTTP `Retry-After`) before the next attempt.
    public var retryAfter: Duration?
    /// How many records at the front of the batch the receiver confirmed before the failure
    /// (RELP acknowledges each message): the worker counts them as delivered, moves the sink
    /// past them and sends only the rest again. 0: nothing of the batch counts.
    public var confirmedPrefix: Int
    /// Records among that prefix the receiver refused for good: dead letters.
    public var rejectedInPrefix: [SinkRejection]
    /// The receiver closed or reset the connection (counted per sink in
    /// `defender_alertd_connection_losses_total`).
    public var connectionLost: Bool

    /// `description` is shown in the log, `STATUS=`, `/healthz` and dead letters: it is masked
    /// and made printable here, once, whatever part of it came from a receiver.
    public init(
        _ description: String, kind: Kind = .retryable, retryAfter: Duration? = nil, confirmedPrefix: Int = 0,
        rejectedInPrefix: [SinkRejection] = [], connectionLost: Bool = false
    ) {
        self.description = SecretRedaction.shown(description, limit: 2000)
        self.kind = kind
        self.retryAfter = retryAfter
        self.confirmedPrefix = confirmedPrefix
        self.rejectedInPrefix = rejectedInPrefix
        self.connectionLost = connectionLost
    }
}

/// A record the receiver refused for good (a poison record: too large, unparseable for it).
/// Sending it again would fail again, so it leaves the outbox for the dead-letter table with
/// the receiver's reason, and the records behind it go on.
public struct SinkRejection: Sendable, Equatable {
    /// The record's `OutboxRecord.id`.
    public var recordID: Int64
    public var reason: String

    /// `reason` is kept with the dead letter and shown by `state dead-letters`: masked and
    /// made printable here.
    public init(recordID: Int64, reason: String) {
        self.recordID = recordID
        self.reason = SecretRedaction.shown(reason, limit: 2000)
    }
}

/// A place alerts are delivered to.
public protocol AlertSink: Sendable {
    /// Delivers the records; returns only when they are safely stored (for a file: fsync'd)
    /// or refused for good, each refused record with its reason. Throws when the batch as a
    /// whole was not delivered: then nothing of it counts as delivered, except the records the
    /// error's `confirmedPrefix` says the receiver took first.
    func send(_ records: [OutboxRecord]) async throws(SinkError) -> [SinkRejection]
    /// Reopens files (SIGHUP, after logrotate moved them). No-op for most sinks.
    func reopen() async
    /// Closes connections at shutdown. No-op for most sinks.
    func shutdown() async
    /// Records handed to one `send` at most (500 unless the sink asks for more).
    var batchSize: Int { get }
    /// How long the worker waits, once woken, for more records to fill a batch (`.zero`: none).
    var linger: Duration { get }
}

extension AlertSink {
    public func reopen() async {}
    public func shutdown() async {}
    public var batchSize: Int { 500 }
    public var linger: Duration { .zero }
}

/// How `stdout` and `file` sinks write one record: a record format, the shape of the record
/// (`alert` only: ECS, OCSF, evidence split), and whether a summary line names the tenant (it
/// does when several tenants share the sink).
public struct RecordLine: Sendable, Equatable {
    public var format: RecordFormat
    public var showsTenant: Bool
    public var shape: RecordShape

    public init(format: RecordFormat, showsTenant: Bool = false, shape: RecordShape = .native) {
        self.format = format
        self.showsTenant = showsTenant
        self.shape = shape
    }

    /// One line, without the newline (the first document's, for a split record).
    func line(for record: OutboxRecord) -> String {
        var bytes: [UInt8] = []
        _ = append(record, to: &bytes)
        guard let end = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return String(decoding: bytes, as: UTF8.self) }
        return String(decoding: bytes[..<end], as: UTF8.self)
    }

    /// The records as lines, each ending with a newline, in one buffer (a split record: one
    /// line per evidence entity), and the records that cannot be written in the sink's shape.
    func lines(for records: [OutboxRecord]) -> (bytes: [UInt8], rejected: [SinkRejection]) {
        var bytes: [UInt8] = []
        var rejected: [SinkRejection] = []
        bytes.reserveCapacity(records.reduce(0) { $0 + $1.payloadBytes.count + 160 })
        for record in records where !append(record, to: &bytes) { rejected.append(shape.refusal(of: record)) }
        return (bytes, rejected)
    }

    /// Appends the record's lines; false when it cannot be shaped (nothing appended).
    private func append(_ record: OutboxRecord, to bytes: inout [UInt8]) -> Bool {
        switch format {
        case .summary:
            bytes += SummaryLine.line(for: record, showsTenant: showsTenant).utf8
        case .alert where shape == .native:
            bytes += record.payloadBytes
        case .alert:
            guard let documents = shape.documents(for: record) else { return false }
            for (index, document) in documents.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: "\n")) }
                bytes += document
            }
        case .envelope:
            // The record is embedded verbatim: its text is already compact JSON.
            let prefix = JSONValue.object([
                ("tenant", .string(record.tenant)), ("kind", .string(record.kind.rawValue)), ("event", .string(record.event)),
                ("received_at", .string(record.receivedAt)),
            ]).serialized
            bytes += prefix.utf8.dropLast()
            bytes += ",\"\(record.kind.rawValue)\":".utf8
            bytes += record.payloadBytes
            bytes.append(UInt8(ascii: "}"))
        }
        bytes.append(UInt8(ascii: "\n"))
        return true
    }
}
