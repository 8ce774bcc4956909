/// When a failure that lasts until a person acts (a sign-in needed) is written to the log: when
/// it starts, then at most once per `interval` while it lasts, and once when it ends. In between,
/// the caller logs at debug level only, so a poll every second does not write 3,600 error lines
/// an hour saying the same thing.
///
/// A value type: its owner keeps it where its other state is (an actor's property, a `Mutex`).
/// Times are read from the owner's injected clock (`MonotonicClock.now()`).
public struct PersistentFailureLog: Sendable, Equatable {
    /// What to do with one occurrence of the failure.
    public enum Decision: Sendable, Equatable {
        /// Write it at its own level: it starts, or `interval` has passed since it was last
        /// written; `suppressed` occurrences were kept out of the log in between.
        case write(suppressed: Int)
        /// Log it at debug level only: it was written less than `interval` ago.
        case suppress
    }

    /// The longest time the failure goes unwritten while it lasts.
    public let interval: Duration
    private var lastWritten: Duration?
    private var suppressed = 0

    public init(interval: Duration = .seconds(3600)) {
        self.interval = interval
    }

    /// Whether the failure is going on (it was reported and has not ended since).
    public var isFailing: Bool { lastWritten != nil }

    /// The failure happened (again) at `now`.
    public mutating func failed(at now: Duration) -> Decision {
        if let lastWritten, now - lastWritten < interval {
            suppressed += 1
            return .suppress
        }
        let decision = Decision.write(suppressed: suppressed)
        lastWritten = now
        suppressed = 0
        return decision
    }

    /// The failure is over (a token was had, a poll succeeded): true when it was going on, so
    /// the caller writes one line saying it ended.
    public mutating func ended() -> Bool {
        defer { (lastWritten, suppressed) = (nil, 0) }
        return lastWritten != nil
    }
}
