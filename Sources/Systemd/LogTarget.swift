import Foundation
import Logging

/// Where the daemon's own log lines go.
public enum LogTarget: String, Sendable, CaseIterable {
    /// Native journal entries (``JournalLogHandler``).
    case journal
    /// Lines on standard error, plain or JSON (``LogFormat``).
    case stderr
    /// The journal when standard error is connected to it (`JOURNAL_STREAM`), else stderr.
    case auto

    /// Resolves `.auto` using the documented `JOURNAL_STREAM` check: the variable holds the
    /// `device:inode` of the stream systemd connected, and it counts only while standard error
    /// is still that very stream (not redirected by a shell in between).
    public func resolved(environment: [String: String] = ProcessInfo.processInfo.environment) -> LogTarget {
        guard self == .auto else { return self }
        return Self.stderrIsJournalStream(environment["JOURNAL_STREAM"]) ? .journal : .stderr
    }

    static func stderrIsJournalStream(_ value: String?) -> Bool {
        guard let value else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    /// A log handler factory for this target whose level follows `control`; `redact` is applied
    /// to every message and metadata value before it is written.
    public func makeHandler(control: LogControl, redact: @escaping @Sendable (String) -> String = { $0 }) -> @Sendable (String) -> any LogHandler {
        switch self {
        case .journal:
            return { label in
                var handler = JournalLogHandler(label: label)
                handler.logLevel = .trace  // filtering is the wrapper's job
                return LevelControlledLogHandler(base: handler, control: control, redact: redact)
            }
        case .stderr, .auto:
            return { label in
                LevelControlledLogHandler(base: StandardErrorLogHandler(label: label, control: control), control: control, redact: redact)
            }
        }
    }
}
