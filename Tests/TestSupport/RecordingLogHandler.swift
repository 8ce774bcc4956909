import Logging
import Synchronization

/// Log records captured by ``RecordingLogHandler``.
public final class LogRecords: Sendable {
    /// One captured record.
    public struct Record: Sendable {
        public var level: Logger.Level
        public var message: String
        public var metadata: Logger.Metadata
    }

    private let records = Mutex<[Record]>([])

    public init() {}

    func append(_ record: Record) { records.withLock { $0.append(record) } }

    /// Every record so far.
    public var all: [Record] { records.withLock { $0 } }

    /// Records at exactly `level`.
    public func at(_ level: Logger.Level) -> [Record] { all.filter { $0.level == level } }

    /// Every message and metadata value as one text, for leak checks.
    public var fullText: String {
        all.map { "\($0.level) \($0.message) \($0.metadata)" }.joined(separator: "\n")
    }

    /// A logger that writes here, at trace level.
    public func logger(label: String = "test") -> Logger {
        var logger = Logger(label: label) { _ in RecordingLogHandler(records: self) }
        logger.logLevel = .trace
        return logger
    }
}

/// A swift-log handler that keeps records in memory.
public struct RecordingLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace
    let records: LogRecords

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        records.append(
            .init(
                level: event.level, message: event.message.description,
                metadata: metadata.merging(event.metadata ?? [:]) { _, new in new }
            ))
    }
}
