import Foundation
import Logging
import Synchronization
import Timekeeping

/// A tenant's reconciliation sweeps on their schedule, as a job of the ``JobScheduler``. The
/// schedule is kept in the state database, so that a restart does not start it again from
/// zero: the first sweep `reconcile_every` after the first start, each next one
/// `reconcile_every` after the last ended (after a failure, within 10 minutes). It is read at
/// the first step; from then on this keeps it (a write that fails never turns into sweep after
/// sweep) and stores each change. It is wall-clock time, looked at in steps of at most a
/// minute of the scheduler's clock, and never more than an interval away (a clock set back).
final class SweepSchedule: Sendable {
    private struct Kept {
        var due: Date?
        var lastFound = 0
    }

    private let poller: TenantPoller
    private let store: StateStore
    private let clock: MonotonicClock
    private let logger: Logger
    /// Changed by `step()` only, which the scheduler never runs twice at once.
    private let kept = Mutex(Kept())

    init(poller: TenantPoller, store: StateStore, clock: MonotonicClock, logger: Logger) {
        self.poller = poller
        self.store = store
        self.clock = clock
        self.logger = logger
    }

    /// Reads the schedule (the first time), sweeps when it is due, and returns when to look
    /// again (on the scheduler's clock); `nil` once cancelled.
    func step() async -> Duration? {
        let every = poller.tenant.reconcileEvery.inSeconds
        var (due, lastFound) = kept.withLock { ($0.due, $0.lastFound) }
        if due == nil { (due, lastFound) = await load(every: every) }
        var next = min(due ?? Date(), Date().addingTimeInterval(every))
        defer { kept.withLock { $0 = Kept(due: next, lastFound: lastFound) } }
        let wait = next.timeIntervalSinceNow
        if wait > 0 { return clock.now() + .milliseconds(Int64(min(wait, 60) * 1000)) }
        let outcome = await poller.reconcile(previousFound: lastFound)
        if Task.isCancelled { return nil }
        let now = Date()
        switch outcome {
        case .completed(let found, _):
            (next, lastFound) = (now.addingTimeInterval(every), found)
            await record(due: next, sweptAt: now, found: found)
        case .skipped:
            next = now.addingTimeInterval(every)
            await record(due: next)
        case .failed:
            next = now.addingTimeInterval(min(every, 600))
            await record(due: next)
        }
        return clock.now() + .milliseconds(Int64(min(next.timeIntervalSinceNow, 60) * 1000))
    }

    /// The stored schedule (due, and what the last sweep found), or, at the very first start,
    /// a sweep `every` from now, stored.
    private func load(every: TimeInterval) async -> (due: Date, lastFound: Int) {
        let key = poller.stream.key
        var stored: Reconciliation?
        do { stored = try await store.schedules.reconciliation(tenant: key) } catch {
            logger.error("the reconciliation schedule cannot be read; sweeps start from now", metadata: ["tenant": "\(key)", "error": "\(error)"])
        }
        if let stored { return (stored.due, stored.found ?? 0) }
        let due = Date().addingTimeInterval(every)
        await record(due: due)
        return (due, 0)
    }

    /// Stores the schedule (under the stream's key: the tenant's name for its alerts, as before
    /// incidents came).
    private func record(due: Date, sweptAt: Date? = nil, found: Int? = nil) async {
        do {
            try await store.schedules.scheduleReconciliation(tenant: poller.stream.key, due: due, sweptAt: sweptAt, found: found)
        } catch {
            logger.error(
                "the reconciliation schedule cannot be stored (this run keeps it in memory)",
                metadata: ["tenant": "\(poller.stream.key)", "error": "\(error)"])
        }
    }
}
