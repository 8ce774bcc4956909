import Timekeeping

/// A local budget of API calls per app and tenant, below Defender's limits (100 a minute,
/// 1,500 an hour), so 429s stay rare: ``acquire()`` waits until a call fits both windows and
/// any `Retry-After` the API asked for has passed.
public actor RateBudget {
    public let perMinute: Int
    public let perHour: Int
    private let clock: MonotonicClock
    private var calls: [Duration] = []
    private var blockedUntil: Duration = .zero

    public init(perMinute: Int = 100, perHour: Int = 1500, clock: MonotonicClock = .continuous) {
        self.perMinute = max(1, perMinute)
        self.perHour = max(1, perHour)
        self.clock = clock
    }

    /// How long the next call would have to wait now (zero when it may go).
    public func waitTime() -> Duration {
        let now = clock.now()
        calls.removeAll { $0 <= now - .seconds(3600) }
        var wait = max(.zero, blockedUntil - now)
        let lastMinute = calls.filter { $0 > now - .seconds(60) }
        if lastMinute.count >= perMinute, let oldest = lastMinute.first { wait = max(wait, oldest + .seconds(60) - now) }
        if calls.count >= perHour, let oldest = calls.first { wait = max(wait, oldest + .seconds(3600) - now) }
        return wait
    }

    /// Waits for room, then records the call.
    public func acquire() async throws {
        while true {
            let wait = waitTime()
            if wait <= .zero { break }
            try await clock.sleep(wait)
        }
        calls.append(clock.now())
    }

    /// No call before `wait` from now (the API's `Retry-After`).
    public func pause(for wait: Duration) {
        blockedUntil = max(blockedUntil, clock.now() + wait)
    }
}
