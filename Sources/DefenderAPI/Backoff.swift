/// Exponential back-off with full jitter: attempt n waits a random time in
/// `0...min(cap, base * 2^n)`, so many clients recovering at once do not retry in lock-step.
public struct Backoff: Sendable {
    public var base: Duration
    public var cap: Duration

    public init(base: Duration = .seconds(1), cap: Duration = .seconds(300)) {
        self.base = base
        self.cap = cap
    }

    /// The ceiling for attempt `attempt` (0-based), before jitter.
    public func ceiling(attempt: Int) -> Duration {
        let exponent = min(max(attempt, 0), 30)
        let grown = base * (1 << exponent)
        return min(grown, cap)
    }

    /// A delay for attempt `attempt`; `unit` is a random number in `0..<1`.
    public func delay(attempt: Int, unit: Double) -> Duration {
        ceiling(attempt: attempt) * max(0, min(unit, 1))
    }
}
