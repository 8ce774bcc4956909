import CSystemd

/// The watchdog the service manager expects us to ping, from `WATCHDOG_USEC` and `WATCHDOG_PID`.
public struct WatchdogSettings: Sendable, Equatable {
    /// The watchdog timeout (`WatchdogSec=` in the unit).
    public var timeout: Duration

    /// How often to ping: half the timeout, as sd_watchdog_enabled(3) recommends.
    public var pingInterval: Duration { timeout / 2 }

    /// Creates settings for a known timeout.
    public init(timeout: Duration) {
        self.timeout = timeout
    }

    /// Reads the settings the way `sd_watchdog_enabled(3)` does: `nil` when no watchdog is
    /// configured, or when `WATCHDOG_PID` names another process. Never unsets the environment.
    public static func fromEnvironment() -> WatchdogSettings? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return WatchdogSettings(timeout: .microseconds(Int64(clamping: usec)))
    }
}
