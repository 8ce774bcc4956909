import Logging
import Synchronization

/// The daemon-wide log level, changeable at run time (a reload can lower or raise it).
///
/// swift-log fixes a handler's level when a `Logger` is made; handlers made by
/// ``LogTarget/makeHandler(control:)`` read this shared level instead, unless a logger sets
/// its own.
public final class LogLevelControl: Sendable {
    private let storage: Mutex<Logger.Level>

    /// Creates the control with an initial level.
    public init(_ level: Logger.Level) {
        storage = Mutex(level)
    }

    /// The current level.
    public var level: Logger.Level {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }
}

/// Wraps a handler so that its level follows a ``LogLevelControl``.
struct LevelControlledLogHandler: LogHandler {
    var base: any LogHandler
    let control: LogLevelControl
    /// Applied to the message and every metadata value (the logger's own included) first.
    let redact: @Sendable (String) -> String
    private var ownLevel: Logger.Level?

    init(base: any LogHandler, control: LogLevelControl, redact: @escaping @Sendable (String) -> String = { $0 }) {
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
