import Foundation
import Logging
import OrderedJSON
import Synchronization
import Timekeeping

/// A swift-log handler for standard error, outside systemd (a container, a shell): swift-log's
/// plain lines, or one JSON object a line (``JSONLineLogHandler``), as ``LogControl/format``
/// says at each entry (a reload can switch it).
struct StandardErrorLogHandler: LogHandler {
    private var text: StreamLogHandler
    private var json: JSONLineLogHandler
    let control: LogControl

    init(label: String, control: LogControl) {
        text = StreamLogHandler.standardError(label: label)
        json = JSONLineLogHandler(label: label)
        self.control = control
    }

    /// Filtering is ``LevelControlledLogHandler``'s job.
    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }

    var metadata: Logger.Metadata {
        get { json.metadata }
        set {
            json.metadata = newValue
            text.metadata = newValue
        }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { json.metadataProvider }
        set {
            json.metadataProvider = newValue
            text.metadataProvider = newValue
        }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { json[metadataKey: key] }
        set {
            json[metadataKey: key] = newValue
            text[metadataKey: key] = newValue
        }
    }

    func log(event: LogEvent) {
        switch control.format {
        case .text: text.log(event: event)
        case .json: json.log(event: event)
        }
    }
}

/// A swift-log handler that writes one JSON object a line on standard error, for the log
/// collectors of containers (the kubelet's files, Fluent Bit, Vector): `TIMESTAMP` (RFC 3339,
/// UTC, microseconds) then the very fields a journal entry of ``JournalLogHandler`` has
/// (`MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`, `CODE_*`, `DEFENDER_LOGGER`, each metadata value
/// as `DEFENDER_<KEY>`), every value a string as `journalctl -o json` gives them, so that one
/// parser reads both. A line is written whole, never interleaved with another.
public struct JSONLineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let write: @Sendable (String) -> Void

    /// A handler for the logger `label` whose lines go to `write` (standard error by default).
    public init(label: String, write: @escaping @Sendable (String) -> Void = StandardError.writeLine) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        write(Self.line(JournalLogHandler.fields(of: event, metadata: metadata, provider: metadataProvider, label: label), at: Date()))
    }

    /// One entry's JSON object, without the line end.
    static func line(_ fields: [(name: String, value: String)], at time: Date) -> String {
        JSONValue.object([("TIMESTAMP", .string(timestamp(time)))] + fields.map { ($0.name, .string($0.value)) }).serialized
    }

    /// `2026-12-07T09:10:11.123456Z`.
    static func timestamp(_ time: Date) -> String {
        Timestamp(time, fractionDigits: 6).description
    }
}

/// Whole lines on standard error, one writer at a time.
public enum StandardError {
    private static let lock = Mutex(())

    /// Writes `line` and a line end with as many `write(2)`s as it takes (a pipe takes a long
    /// line in parts); an error (a closed descriptor) drops the line: there is nowhere else to
    /// say it.
    public static func writeLine(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.append(0x0A)
        lock.withLock { _ in
            bytes.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Foundation.write(STDERR_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                    if written > 0 {
                        offset += written
                    } else if written < 0, errno == EINTR {
                        continue
                    } else {
                        return
                    }
                }
            }
        }
    }
}
