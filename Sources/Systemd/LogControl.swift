import Logging
import Synchronization

/// The daemon-wide log level and the format of lines on standard error, changeable at run time
/// (a reload applies `log_level` and `log_format` at once).
///
/// swift-log fixes a handler's level when a `Logger` is made; handlers made by
/// ``LogTarget/makeHandler(control:redact:)`` read this shared level instead, unless a logger
/// sets its own.
public final class LogControl: Sendable {
    private let storage: Mutex<(level: Logger.Level, format: LogFormat)>

    /// Creates the control with an initial level and format.
    public init(_ level: Logger.Level, format: LogFormat = .text) {
        storage = Mutex((level, format))
    }

    /// The current level.
    public var level: Logger.Level {
        get { storage.withLock { $0.level } }
        set { storage.withLock { $0.level = newValue } }
    }

    /// How lines on standard error are written (the journal's entries have fields of their own).
    public var format: LogFormat {
        get { storage.withLock { $0.format } }
        set { storage.withLock { $0.format = newValue } }
    }
}

/// How the daemon's log lines are written on standard error (outside systemd: a container, a
/// shell).
public enum LogFormat: String, Sendable, CaseIterable {
    /// swift-log's plain lines: `2026-12-07T09:10:11+0000 info defender-alertd : key=value message`.
    case text
    /// One JSON object a line, the journal's field names as keys (``JSONLineLogHandler``).
    case json
}

/// Wraps a handler so that its level follows a ``LogControl``.
struct LevelControlledLogHandler: LogHandler {
    var base: any LogHandler
    let control: LogControl
    /// Applied to the message and every metadata value (the logger's own included) first.
    let redact: @Sendable (String) -> String
    private var ownLevel: Logger.Level?

    init(base: any LogHandler, control: LogControl, redact: @escaping @Sendable (String) -> String = { $0 }) {
        self.base = base
        self.control = control
        self.redact = redact
    }

    var logLevel: Logger.Level {
        get { ownLevel ?? control.level }
        set { ownLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { base.metadataProvider }
        set { base.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        event.message = "\(redact(event.message.description))"
        event.metadata = event.metadata.map { $0.mapValues(redacted) }
        // The logger's own metadata (tenant=...) is written by the base handler as it is: it
        // holds names the daemon chose, never text from outside.
        base.log(event: event)
    }

    private func redacted(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text): .string(redact(text))
        case .stringConvertible(let convertible): .string(redact(convertible.description))
        case .array(let values): .array(values.map(redacted))
        case .dictionary(let values): .dictionary(values.mapValues(redacted))
        }
    }
}
