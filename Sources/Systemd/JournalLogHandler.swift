import CSystemd
import Foundation
import Logging

/// A swift-log handler that writes native journal entries with `sd_journal_sendv(3)`.
///
/// Each entry has `MESSAGE`, `PRIORITY` (from the log level), `SYSLOG_IDENTIFIER`,
/// `CODE_FILE`/`CODE_LINE`/`CODE_FUNC`, `DEFENDER_LOGGER` (the logger's label) and every
/// metadata value as its own field (see ``JournalFieldName``). Values may span lines; they
/// are sent as binary-safe fields and come back unchanged. If journald cannot be reached the
/// entry is written to standard error instead, so nothing is lost silently.
public struct JournalLogHandler: LogHandler {
    /// `SYSLOG_IDENTIFIER` of every entry.
    public static let syslogIdentifier = "defender-alertd"

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String

    /// Creates a handler for the logger `label`.
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let fields = Self.fields(of: event, metadata: metadata, provider: metadataProvider, label: label)
        if Self.send(fields.map { "\($0.name)=\($0.value)" }) != 0 {
            FileHandle.standardError.write(Data("<\(Self.priority(for: event.level))>\(event.message)\n".utf8))
        }
    }

    /// The journal fields of `event` logged through a logger with `metadata` and `provider`
    /// (the event's own metadata wins, then the provider's); the JSON lines of
    /// ``JSONLineLogHandler`` have the same.
    static func fields(
        of event: LogEvent, metadata: Logger.Metadata, provider: Logger.MetadataProvider?, label: String
    ) -> [(name: String, value: String)] {
        var merged = metadata
        if let provided = provider?.get() { merged.merge(provided) { _, new in new } }
        if let eventMetadata = event.metadata { merged.merge(eventMetadata) { _, new in new } }
        return fields(
            level: event.level, message: event.message.description, metadata: merged, label: label,
            file: event.file, function: event.function, line: event.line)
    }

    /// The journal fields for one entry, in order.
    static func fields(
        level: Logger.Level, message: String, metadata: Logger.Metadata, label: String,
        file: String, function: String, line: UInt
    ) -> [(name: String, value: String)] {
        var fields = [
            ("MESSAGE", message),
            ("PRIORITY", "\(priority(for: level))"),
            ("SYSLOG_IDENTIFIER", syslogIdentifier),
            ("CODE_FILE", file),
            ("CODE_LINE", "\(line)"),
            ("CODE_FUNC", function),
            ("DEFENDER_LOGGER", label),
        ]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            fields.append((JournalFieldName.forMetadataKey(key), flatten(value)))
        }
        return fields
    }

    /// syslog priority (0 emerg ... 7 debug) for a swift-log level.
    public static func priority(for level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    private static func flatten(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array(let array): "[" + array.map(flatten).joined(separator: ", ") + "]"
        case .dictionary(let dictionary):
            "{" + dictionary.sorted { $0.key < $1.key }.map { "\($0.key): \(flatten($0.value))" }.joined(separator: ", ") + "}"
        }
    }

    /// Sends one entry; returns 0 or a negative errno.
    static func send(_ fields: [String]) -> Int32 {
        JournalWriter.send(fields)
    }
}

/// Writes native journal entries with `sd_journal_sendv(3)`.
public enum JournalWriter {
    /// journald's socket for native entries.
    public static let socketPath = "/run/systemd/journal/socket"

    /// Whether journald is there to receive entries: `sd_journal_sendv` reports success even
    /// when nobody listens, so a datagram connect to its socket decides.
    public static func isAvailable() -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in socketPath.utf8.enumerated() { buffer[index] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }

    /// Sends one entry of `NAME=value` fields (values may hold newlines or binary data;
    /// large entries go through libsystemd's memfd path). Returns 0 or a negative errno.
    public static func send(_ fields: [String]) -> Int32 {
        // All fields in one buffer; each iovec points at its own slice.
        var bytes: [UInt8] = []
        var ranges: [Range<Int>] = []
        for field in fields {
            let start = bytes.count
            bytes.append(contentsOf: field.utf8)
            ranges.append(start..<bytes.count)
        }
        return bytes.withUnsafeMutableBytes { buffer in
            var vectors = ranges.map { range in
                iovec(iov_base: buffer.baseAddress.map { $0 + range.lowerBound }, iov_len: range.count)
            }
            return sd_journal_sendv(&vectors, Int32(vectors.count))
        }
    }
}
