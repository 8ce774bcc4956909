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
    private var ownLevel: Logger.Level?

    init(base: any LogHandler, control: LogLevelControl) {
        self.base = base
        self.control = control
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
        base.log(event: event)
    }
}
