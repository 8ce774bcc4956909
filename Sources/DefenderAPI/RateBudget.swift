import Synchronization
import Timekeeping

/// A local budget of API calls per app and tenant, below Defender's limits (100 a minute,
/// 1,500 an hour), so 429s stay rare: ``acquire()`` waits until a call fits both windows and
/// any `Retry-After` the API asked for has passed.
///
/// The API counts a call at some moment between when it was sent and when its answer came, so
/// the budget counts each call in its windows until its answer came (a call still on its way
/// counts until now), plus a margin: however long the network takes, no window of the API's
/// clock can see more calls than the limit.
///
/// A `Retry-After` holds back every call of the app and tenant, whichever task sends it: it is
/// kept behind a lock (not in the actor), recorded by ``pause(for:)`` the moment a 429 is read
/// and checked by ``retryAfterRemaining()`` right before a request is handed to the transport,
/// in the same synchronous stretch as the send. A call counted by ``acquire(priority:announce:)``
/// before a 429 came, but not yet sent, is stopped there: ``withdraw(_:)`` it and acquire again.
///
/// One budget belongs to the app and tenant for the life of the daemon: a reload keeps it
/// (and with it the calls counted and any `Retry-After` in force).
public actor RateBudget {
    /// A call counted by the budget; ``answered(_:)`` records when its answer came.
    public struct Call: Sendable {
        fileprivate let number: Int
        /// How long the call waited before it could go: for the API's `Retry-After`, and for
        /// the budget's own limits.
        public var waitedForRetryAfter: Duration = .zero
        public var waitedForLimits: Duration = .zero
    }

    public private(set) var perMinute: Int
    public private(set) var perHour: Int
    private nonisolated let clock: MonotonicClock
    private var calls: [(number: Int, answered: Duration?)] = []
    private var numbered = 0
    /// Until when the API's `Retry-After` holds every call back (on `clock`).
    private final class RetryAfterGate: Sendable {
        let until = Mutex<Duration>(.zero)
    }
    private nonisolated let gate = RetryAfterGate()
    /// Normal calls waiting for room (low-priority calls wait for them).
    private var normalWaiting = 0
    static let lowPriorityStep: Duration = .seconds(1)

    /// Added to each window: the API's clock and ours may not tick at quite the same rate, and
    /// a timer fires a little early or late.
    static let margin: Duration = .milliseconds(500)

    public init(perMinute: Int = 100, perHour: Int = 1500, clock: MonotonicClock = .continuous) {
        self.perMinute = max(1, perMinute)
        self.perHour = max(1, perHour)
        self.clock = clock
    }

    /// New limits (a reload); the calls already counted still count.
    public func setLimits(perMinute: Int, perHour: Int) {
        self.perMinute = max(1, perMinute)
        self.perHour = max(1, perHour)
    }

    /// What holds the next call back.
    public enum Limit: Sendable, Equatable, CustomStringConvertible {
        /// The API's `Retry-After`.
        case retryAfter
        /// The budget's calls a minute (`rate_limit_per_minute`).
        case perMinute(Int)
        /// The budget's calls an hour (`rate_limit_per_hour`).
        case perHour(Int)

        public var description: String {
            switch self {
            case .retryAfter: "the API's Retry-After"
            case .perMinute(let limit): "\(limit) calls a minute (rate_limit_per_minute)"
            case .perHour(let limit): "\(limit) calls an hour (rate_limit_per_hour)"
            }
        }
    }

    /// Whose call it is.
    public enum Priority: Sendable {
        /// The normal polls.
        case normal
        /// Background work (a reconciliation sweep): it never takes more than half of either
        /// window, and never a call while a normal one waits, so normal polls are not starved.
        case low
    }

    /// How long the next call would have to wait now (zero when it may go).
    public func waitTime(priority: Priority = .normal) -> Duration {
        nextWait(priority: priority).duration
    }

    /// How long the next call would have to wait now, and which limit holds it back (`nil`
    /// when it may go).
    public func nextWait(priority: Priority = .normal) -> (duration: Duration, limit: Limit?) {
        let now = clock.now()
        if priority == .low, normalWaiting > 0 { return (Self.lowPriorityStep, .perMinute(perMinute)) }
        // When each counted call stops counting in a window of `length`.
        func expiry(_ length: Duration) -> [Duration] { calls.map { ($0.answered ?? now) + length + Self.margin } }
        calls.removeAll { ($0.answered ?? now) + .seconds(3600) + Self.margin <= now }
        var wait = max(.zero, gate.until.withLock { $0 } - now)
        var holding: Limit? = wait > .zero ? .retryAfter : nil
        let share = priority == .low ? 2 : 1
        for (length, limit, kind) in [
            (Duration.seconds(60), max(1, perMinute / share), Limit.perMinute(perMinute)),
            (.seconds(3600), max(1, perHour / share), .perHour(perHour)),
        ] {
            let counting = expiry(length).filter { $0 > now }.sorted()
            // Room for one more once all but limit - 1 of them have stopped counting.
            if counting.count >= limit, counting[counting.count - limit] - now > wait {
                wait = counting[counting.count - limit] - now
                holding = kind
            }
        }
        return (wait, holding)
    }

    /// Waits for room, then counts the call. Call ``answered(_:)`` when its answer came (or the
    /// request failed). `announce` hears of a wait before it starts: how long, and which limit
    /// holds the call back.
    public func acquire(priority: Priority = .normal, announce: @Sendable (Duration, Limit) -> Void = { _, _ in }) async throws -> Call {
        var announced = false
        var waited = (retryAfter: Duration.zero, limits: Duration.zero)
        while true {
            let (wait, limit) = nextWait(priority: priority)
            guard wait > .zero, let limit else { break }
            if !announced { announce(wait, limit) }
            announced = true
            let start = clock.now()
            if priority == .normal { normalWaiting += 1 }
            defer { if priority == .normal { normalWaiting -= 1 } }
            // A low-priority call looks again after a short step: a normal call may come first.
            try await clock.sleep(priority == .low ? min(wait, Self.lowPriorityStep) : wait)
            if limit == .retryAfter { waited.retryAfter += clock.now() - start } else { waited.limits += clock.now() - start }
        }
        numbered += 1
        calls.append((numbered, nil))
        return Call(number: numbered, waitedForRetryAfter: waited.retryAfter, waitedForLimits: waited.limits)
    }

    /// The call's answer came: from now on its windows run out.
    public func answered(_ call: Call) {
        guard let index = calls.firstIndex(where: { $0.number == call.number }) else { return }
        calls[index].answered = clock.now()
    }

    /// A counted call that was not sent (``retryAfterRemaining()`` held it back): it stops counting.
    public func withdraw(_ call: Call) {
        calls.removeAll { $0.number == call.number }
    }

    /// No call before `wait` from now (the API's `Retry-After`). Synchronous, so that a 429 is
    /// recorded before anything else runs after it was read.
    public nonisolated func pause(for wait: Duration) {
        let now = clock.now()
        gate.until.withLock { $0 = max($0, now + wait) }
    }

    /// How long a `Retry-After` still holds every call back (zero when none does). Checked right
    /// before a request is sent, with nothing awaited between the check and the send: a call
    /// counted before a 429 came is not sent inside its `Retry-After`.
    public nonisolated func retryAfterRemaining() -> Duration {
        let now = clock.now()
        return max(.zero, gate.until.withLock { $0 } - now)
    }
}
