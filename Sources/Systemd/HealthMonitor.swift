import Synchronization
import Timekeeping

/// Knows whether every long-running component of the daemon is making progress.
///
/// Components register with an allowance: the longest they may go without reporting progress
/// while healthy. A component that is deliberately waiting (for example backing off after a
/// failure) keeps reporting; one that is hung stops, and once its allowance has passed it is
/// reported as stalled. The ``WatchdogService`` pings systemd only while nothing is stalled.
public final class HealthMonitor: Sendable {
    /// A component that has gone quiet for longer than its allowance.
    public struct Stall: Sendable, Equatable, CustomStringConvertible {
        /// The component's registered name.
        public var component: String
        /// How long since its last progress report.
        public var silentFor: Duration
        /// Its allowance.
        public var allowance: Duration

        public init(component: String, silentFor: Duration, allowance: Duration) {
            (self.component, self.silentFor, self.allowance) = (component, silentFor, allowance)
        }

        public var description: String {
            "\(component) (no progress for \(silentFor.roundedSeconds)s, allowed \(allowance.roundedSeconds)s)"
        }
    }

    private struct Component {
        var allowance: Duration
        var lastProgress: Duration
    }

    private let clock: MonotonicClock
    private let components = Mutex<[String: Component]>([:])

    /// Creates a monitor that reads time from `clock`.
    public init(clock: MonotonicClock) {
        self.clock = clock
    }

    /// Registers (or re-registers) a component; it counts as having made progress now.
    public func register(_ name: String, allowance: Duration) -> HealthReporter {
        let now = clock.now()
        components.withLock { $0[name] = Component(allowance: allowance, lastProgress: now) }
        return HealthReporter(name: name, monitor: self)
    }

    /// Forgets a component, for example when a sink is removed by a reload.
    public func deregister(_ name: String) {
        _ = components.withLock { $0.removeValue(forKey: name) }
    }

    /// Records progress for a registered component; unknown names are ignored.
    public func reportProgress(_ name: String) {
        let now = clock.now()
        components.withLock { $0[name]?.lastProgress = now }
    }

    /// The components that are past their allowance, sorted by name.
    public func stalls() -> [Stall] {
        let now = clock.now()
        return components.withLock { components in
            components.compactMap { name, component in
                let silent = now - component.lastProgress
                guard silent > component.allowance else { return nil }
                return Stall(component: name, silentFor: silent, allowance: component.allowance)
            }
        }.sorted { $0.component < $1.component }
    }

    /// The names of all registered components, sorted.
    public var registeredComponents: [String] {
        components.withLock { $0.keys.sorted() }
    }
}

/// The handle a component uses to say it is alive.
public struct HealthReporter: Sendable {
    /// The component's name.
    public let name: String
    private let monitor: HealthMonitor

    init(name: String, monitor: HealthMonitor) {
        self.name = name
        self.monitor = monitor
    }

    /// Records that the component made progress (or is deliberately waiting) just now.
    public func progress() {
        monitor.reportProgress(name)
    }
}
