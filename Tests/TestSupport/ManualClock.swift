import Timekeeping
import Synchronization
import Systemd

/// A clock that moves only when a test says so; sleeping on it is not supported (tests call
/// the one-step methods instead of running loops).
public final class ManualClock: Sendable {
    private let elapsed = Mutex<Duration>(.zero)

    public init() {}

    /// Moves time forward.
    public func advance(by duration: Duration) {
        elapsed.withLock { $0 += duration }
    }

    /// The clock to inject.
    public var clock: MonotonicClock {
        MonotonicClock(now: { self.elapsed.withLock { $0 } }, sleep: { _ in
            throw CancellationError()
        })
    }
}
