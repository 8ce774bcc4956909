import ServiceLifecycle

/// Tells systemd when the daemon is ready and when it begins to stop.
///
/// Run it as the **last** service of the `ServiceGroup`: the group starts every service before
/// this one, and on SIGTERM it shuts services down in reverse order, so this one hears of the
/// shutdown first and sends `STOPPING=1` at once.
public struct SystemdLifecycleService: Service, CustomStringConvertible {
    private let notifier: any Notifier
    private let status: StatusLine
    private let onStopping: @Sendable () -> Void

    /// Creates the service; `STATUS=` changes go through `status`. `onStopping` runs once the
    /// group begins to shut down, right after `STOPPING=1`.
    public init(notifier: any Notifier, status: StatusLine, onStopping: @escaping @Sendable () -> Void = {}) {
        self.notifier = notifier
        self.status = status
        self.onStopping = onStopping
    }

    public func run() async throws {
        notifier.send(.ready)
        // Wait until the group shuts down; a cancellation ends the wait just the same.
        try? await gracefulShutdown()
        notifier.send(.stopping)
        status.set("lifecycle", "stopping")
        onStopping()
    }

    public var description: String { "SystemdLifecycleService" }
}
