import Dispatch
import Synchronization

/// Hands every message to another notifier on a thread of its own, in order, so that no caller
/// ever waits for the service manager.
///
/// `sd_notify(3)` sends on a blocking datagram socket: while the manager does not read its
/// notify socket and the socket's queue is full, the send waits. A `STATUS=` sent from the
/// status line, under its lock and on Swift's cooperative pool, froze the whole daemon that
/// way: every task that touched the status line waited behind it, a SIGTERM was never acted
/// on (seen in `make test`, whose notify socket is read only now and then). Here the callers
/// only queue. While a send waits, a newer `STATUS=` replaces the one queued, and a queued
/// `WATCHDOG=1` is not queued twice, so what waits stays a handful of messages; every other
/// message (`READY=1`, `RELOADING=1`, `STOPPING=1`...) is kept, in order, up to 64 batches.
public final class QueuedNotifier: Notifier {
    private let base: any Notifier
    private let queue = DispatchQueue(label: "defender-alertd.notify")
    private let pending = Mutex<(batches: [[NotifyMessage]], draining: Bool)>(([], false))

    public init(_ base: any Notifier) {
        self.base = base
    }

    /// Queues `messages` for the manager; true (the send itself happens later).
    @discardableResult
    public func send(_ messages: [NotifyMessage]) -> Bool {
        guard !messages.isEmpty else { return true }
        let start = pending.withLock { pending -> Bool in
            if let kind = Self.replaceable(messages) {
                pending.batches.removeAll { Self.replaceable($0) == kind }
            }
            pending.batches.append(messages)
            // A manager that never reads, and reload after reload (RELOADING=1, READY=1): the
            // oldest go first, past what any manager still cares about.
            if pending.batches.count > Self.limit { pending.batches.removeFirst(pending.batches.count - Self.limit) }
            defer { pending.draining = true }
            return !pending.draining
        }
        if start { queue.async { self.drain() } }
        return true
    }

    /// At most this many batches wait.
    static let limit = 64

    /// Messages waiting to be sent (for tests).
    var waiting: [[NotifyMessage]] { pending.withLock { $0.batches } }

    private func drain() {
        while let batch = pending.withLock({ pending -> [NotifyMessage]? in
            guard !pending.batches.isEmpty else {
                pending.draining = false
                return nil
            }
            return pending.batches.removeFirst()
        }) {
            base.send(batch)
        }
    }

    /// A batch that only says what a newer one says again: a status line, a watchdog ping.
    private static func replaceable(_ batch: [NotifyMessage]) -> String? {
        if batch.allSatisfy({ if case .status = $0 { true } else { false } }) { return "status" }
        if batch.allSatisfy({ $0 == .watchdog }) { return "watchdog" }
        return nil
    }
}
