import OrderedJSON

/// Why a sink did not take a batch. Its alerts stay in the outbox and are sent again.
public struct SinkError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A place alerts are delivered to.
public protocol AlertSink: Sendable {
    /// Delivers the records; returns only when they are safely stored (for a file: fsync'd).
    func send(_ records: [OutboxRecord]) async throws(SinkError)
    /// Reopens files (SIGHUP, after logrotate moved them). No-op for most sinks.
    func reopen() async
}

extension AlertSink {
    public func reopen() async {}
}

/// How `stdout` and `file` sinks write one record: a record format, and whether a summary
/// line names the tenant (it does when several tenants share the sink).
public struct RecordLine: Sendable, Equatable {
    public var format: RecordFormat
    public var showsTenant: Bool

    public init(format: RecordFormat, showsTenant: Bool = false) {
        self.format = format
        self.showsTenant = showsTenant
    }

    /// One line, without the newline.
    func line(for record: OutboxRecord) -> String {
        var bytes: [UInt8] = []
        append(record, to: &bytes)
        bytes.removeLast()
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The records as lines, each ending with a newline, in one buffer.
    func lines(for records: [OutboxRecord]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(records.reduce(0) { $0 + $1.payloadBytes.count + 160 })
        for record in records { append(record, to: &bytes) }
        return bytes
    }

    private func append(_ record: OutboxRecord, to bytes: inout [UInt8]) {
        switch format {
        case .summary:
            bytes += SummaryLine.line(for: record, showsTenant: showsTenant).utf8
        case .alert:
            bytes += record.payloadBytes
        case .envelope:
            // The alert is embedded verbatim: its text is already compact JSON.
            let prefix = JSONValue.object([
                ("tenant", .string(record.tenant)), ("event", .string(record.event)), ("received_at", .string(record.receivedAt)),
            ]).serialized
            bytes += prefix.utf8.dropLast()
            bytes += ",\"alert\":".utf8
            bytes += record.payloadBytes
            bytes.append(UInt8(ascii: "}"))
        }
        bytes.append(UInt8(ascii: "\n"))
    }
}
