/// The clock that long-running services read and sleep on, injected so tests never sleep.
///
/// It measures elapsed time since an arbitrary origin, which is all that timeouts, watchdog
/// allowances and back-off need. Build it from any `Clock` whose duration is `Swift.Duration`.
public struct MonotonicClock: Sendable {
    /// Time elapsed since the clock's origin.
    public let now: @Sendable () -> Duration
    /// Suspends for the given duration (cancellable).
    public let sleep: @Sendable (Duration) async throws -> Void

    /// Wraps a standard clock.
    public init<C: Clock>(_ clock: C) where C.Duration == Duration {
        let origin = clock.now
        now = { origin.duration(to: clock.now) }
        sleep = { duration in try await clock.sleep(for: duration) }
    }

    /// A clock from explicit closures (test clocks).
    public init(now: @escaping @Sendable () -> Duration, sleep: @escaping @Sendable (Duration) async throws -> Void) {
        self.now = now
        self.sleep = sleep
    }

    /// The real clock: `ContinuousClock` to read, ``TimerSleep`` to sleep (a cancelled sleep
    /// frees its timer at once).
    public static var continuous: MonotonicClock {
        let clock = ContinuousClock()
        let origin = clock.now
        return MonotonicClock(now: { origin.duration(to: clock.now) }, sleep: { try await TimerSleep.sleep(for: $0) })
    }
}
