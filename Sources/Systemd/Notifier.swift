import CSystemd
import Foundation
import Timekeeping

/// One state change announced to the service manager through `sd_notify(3)`.
public enum NotifyMessage: Sendable, Equatable {
    /// `READY=1`: start-up is finished.
    case ready
    /// `STOPPING=1`: the service is shutting down.
    case stopping
    /// `RELOADING=1` with the `MONOTONIC_USEC=` at which the reload began.
    case reloading(monotonicMicroseconds: UInt64)
    /// `STATUS=`: one human-readable line for `systemctl status`. Newlines become spaces.
    case status(String)
    /// `WATCHDOG=1`: keep-alive ping.
    case watchdog
    /// `WATCHDOG=trigger`: ask the service manager to act as if the watchdog had expired.
    case watchdogTrigger
    /// `EXTEND_TIMEOUT_USEC=`: more time for the current start, reload or stop.
    case extendTimeout(Duration)
    /// `ERRNO=`: the errno-style reason for a failure.
    case errno(Int32)

    /// The `KEY=value` assignment sent on the notify socket.
    public var assignment: String {
        switch self {
        case .ready: "READY=1"
        case .stopping: "STOPPING=1"
        case .reloading(let usec): "RELOADING=1\nMONOTONIC_USEC=\(usec)"
        case .status(let text): "STATUS=" + Self.singleLine(text)
        case .watchdog: "WATCHDOG=1"
        case .watchdogTrigger: "WATCHDOG=trigger"
        case .extendTimeout(let duration): "EXTEND_TIMEOUT_USEC=\(duration.wholeMicroseconds)"
        case .errno(let code): "ERRNO=\(code)"
        }
    }

    private static func singleLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }
}

/// Something that tells the service manager about state changes.
///
/// The seam exists so that components can be tested with a recording notifier; the daemon
/// itself uses ``SystemdNotifier``.
public protocol Notifier: Sendable {
    /// Sends the messages as one datagram. Returns `false` when the service manager could not be told.
    @discardableResult
    func send(_ messages: [NotifyMessage]) -> Bool
}

extension Notifier {
    /// Sends the messages as one datagram.
    @discardableResult
    public func send(_ messages: NotifyMessage...) -> Bool {
        send(messages)
    }
}

/// Talks to systemd through `sd_notify(3)` on `$NOTIFY_SOCKET` (a path or an abstract `@name`).
///
/// When `NOTIFY_SOCKET` is unset (not started by systemd) every send is a cheap no-op that
/// reports success. The environment is never modified, so child processes and later sends
/// still see the socket.
public struct SystemdNotifier: Notifier {
    /// Whether a notify socket was configured when this notifier was made.
    public let isEnabled: Bool

    /// Creates a notifier; it is enabled when `NOTIFY_SOCKET` is set and not empty.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        isEnabled = !(environment["NOTIFY_SOCKET"] ?? "").isEmpty
    }

    @discardableResult
    public func send(_ messages: [NotifyMessage]) -> Bool {
        guard isEnabled, !messages.isEmpty else { return true }
        let text = messages.map(\.assignment).joined(separator: "\n")
        return sd_notify(0, text) >= 0
    }
}
