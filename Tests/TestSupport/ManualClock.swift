import Synchronization
import Systemd
import Timekeeping

/// A virtual clock: it moves only when a test advances it, or when code sleeps on it (a sleep
/// returns at once, with the clock moved forward by the requested time). Nothing waits for
/// real, and a loop that backs off still sees time pass.
public final class ManualClock: Sendable {
    private let elapsed = Mutex<Duration>(.zero)

    public init() {}

    /// Moves time forward.
    public func advance(by duration: Duration) {
        elapsed.withLock { $0 += duration }
    }

    /// The clock to inject.
    public var clock: MonotonicClock {
        MonotonicClock(
            now: { self.elapsed.withLock { $0 } },
            sleep: { duration in
                try Task.checkCancellation()
                self.advance(by: duration)
            })
    }
}
