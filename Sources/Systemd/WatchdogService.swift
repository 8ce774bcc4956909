import Logging
import ServiceLifecycle
import Synchronization
import Timekeeping

/// Pings the systemd watchdog every `WATCHDOG_USEC/2`, but only while the daemon is healthy.
///
/// Health comes from a ``HealthMonitor``: when any registered component has gone silent for
/// longer than its allowance, pings stop (so systemd restarts the service once `WatchdogSec=`
/// runs out), the stalled components are logged at critical level and named in `STATUS=`.
/// Pings resume as soon as every component reports progress again.
public final class WatchdogService: Service, CustomStringConvertible {
    private let settings: WatchdogSettings?
    private let monitor: HealthMonitor
    private let notifier: any Notifier
    private let status: StatusLine
    private let clock: MonotonicClock
    private let logger: Logger
    private let lastVerdict = Mutex<[String]>([])

    /// Creates the service. With `settings == nil` (no watchdog configured) it only keeps the
    /// health part of `STATUS=` current, at `idleCheckInterval`.
    public init(
        settings: WatchdogSettings?,
        monitor: HealthMonitor,
        notifier: any Notifier,
        status: StatusLine,
        clock: MonotonicClock,
        logger: Logger
    ) {
        self.settings = settings
        self.monitor = monitor
        self.notifier = notifier
        self.status = status
        self.clock = clock
        self.logger = logger
    }

    /// How often health is checked when systemd set no watchdog.
    public static let idleCheckInterval: Duration = .seconds(10)

    public func run() async throws {
        let interval = settings?.pingInterval ?? Self.idleCheckInterval
        if let settings {
            logger.info("watchdog enabled", metadata: ["watchdog_timeout_usec": "\(settings.timeout.wholeMicroseconds)"])
        }
        check()
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await self.clock.sleep(interval) }
            } catch {
                return
            }
            check()
        }
    }

    /// One step: evaluates health, pings when healthy, and logs and shows changes.
    /// Returns whether a ping was sent (or would have been, without a watchdog).
    @discardableResult
    public func check() -> Bool {
        let stalls = monitor.stalls()
        let names = stalls.map(\.component)
        let changed = lastVerdict.withLock { last in
            defer { last = names }
            return last != names
        }
        if stalls.isEmpty {
            if settings != nil { notifier.send(.watchdog) }
            if changed {
                logger.notice("all components are making progress again; watchdog pings resumed")
                status.set("health", nil)
            }
            return true
        }
        if changed {
            logger.critical(
                "component stalled: \(stalls.map(\.description).joined(separator: ", ")); watchdog pings withheld",
                metadata: ["stalled_components": .array(names.map { .string($0) })]
            )
            status.set("health", "STALLED: " + names.joined(separator: ", "))
        }
        return false
    }

    public var description: String { "WatchdogService" }
}
