import Synchronization

/// The outbox's depth as the pollers check it against `max_outbox` before each poll. While it is
/// known to be empty (read empty, and none of the pipeline's pollers queued anything since:
/// sinks only take from it) it is not read again for a second: 10,000 tenants polled every
/// minute would otherwise count the outbox 167 times a second. Once it holds anything every
/// check reads it. A group's outbox is shared with the other members, who queue into it
/// unseen: there it is always read.
public final class OutboxDepthReading: Sendable {
    private let store: StateStore
    private let shared: Bool
    /// Until when the outbox is known to be empty (a real clock: a test's stepped clock would
    /// keep an old reading forever).
    private let emptyUntil = Mutex<ContinuousClock.Instant?>(nil)
    private static let emptyFor = Duration.seconds(1)

    public init(store: StateStore, shared: Bool) {
        self.store = store
        self.shared = shared
    }

    /// Every sink's queue together: 0 while known to be empty, else read now.
    func current() async throws(StateError) -> Int {
        if let until = emptyUntil.withLock({ $0 }), ContinuousClock.now < until { return 0 }
        let depth = try await store.outbox.depth().values.reduce(0, +)
        emptyUntil.withLock { $0 = depth == 0 && !shared ? ContinuousClock.now + Self.emptyFor : nil }
        return depth
    }

    /// A poller queued alerts: the outbox is read at the next check.
    func queued() {
        emptyUntil.withLock { $0 = nil }
    }
}
