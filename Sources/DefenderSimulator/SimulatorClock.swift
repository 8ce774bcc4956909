import Foundation
import Synchronization
import Timekeeping

/// The simulator's wall clock: real time, or a manual clock that tests move forward.
public final class SimulatorClock: Sendable {
    private let offset = Mutex<Int64>(0)  // ticks added to the base
    private let manualBase: Int64?

    /// The real clock.
    public static func system() -> SimulatorClock { SimulatorClock(manualBase: nil) }

    /// A clock that stands still at `start` until advanced.
    public static func manual(start: Timestamp) -> SimulatorClock { SimulatorClock(manualBase: start.ticks) }

    private init(manualBase: Int64?) {
        self.manualBase = manualBase
    }

    /// Now, with 7 fraction digits.
    public func now() -> Timestamp {
        let base = manualBase ?? Timestamp(Date()).ticks
        return Timestamp(ticks: base + offset.withLock { $0 })
    }

    /// Moves the clock forward (also shifts the real clock, for tests of time jumps).
    public func advance(seconds: Double) {
        offset.withLock { $0 += Int64(seconds * 10_000_000) }
    }
}
