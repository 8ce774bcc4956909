import Synchronization
import Timekeeping

/// Cancels the tasks that outlast their deadline (each poll's `poll_timeout`), all of them on
/// one timer: one sleeping task for the earliest deadline, set again only when it passes or a
/// new deadline comes before it. A daemon of 10,000 tenants starts 167 polls a second; a timer
/// of its own for each would wake a thread twice a poll (set, then cancelled).
final class DeadlineWatch: Sendable {
    private struct Watched {
        var deadline: Duration
        var cancel: @Sendable () -> Void
    }

    private struct State {
        var watched: [Int: Watched] = [:]
        var nextID = 0
        /// The deadline the sleeping timer wakes at, and the timer.
        var timer: (at: Duration, task: Task<Void, Never>)?
        var stopped = false
    }

    private let clock: MonotonicClock
    private let state = Mutex(State())

    init(clock: MonotonicClock) {
        self.clock = clock
    }

    /// Runs `body` in a task of its own, cancelled when `timeout` passes (or when the caller is
    /// cancelled); returns whether the deadline passed.
    func run(timeout: Duration, _ body: @escaping @Sendable () async -> Void) async -> Bool {
        let work = Task { await body() }
        let passed = Flag()
        let id = watch(until: clock.now() + timeout) {
            passed.set()
            work.cancel()
        }
        await withTaskCancellationHandler {
            await work.value
        } onCancel: {
            work.cancel()
        }
        state.withLock { _ = $0.watched.removeValue(forKey: id) }
        return passed.isSet
    }

    /// How many runs are watched now.
    var watchedCount: Int { state.withLock { $0.watched.count } }

    /// Cancels the timer; deadlines are no longer watched.
    func stop() {
        state.withLock { state in
            state.stopped = true
            state.timer?.task.cancel()
            state.timer = nil
        }
    }

    private func watch(until deadline: Duration, cancel: @escaping @Sendable () -> Void) -> Int {
        state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.watched[id] = Watched(deadline: deadline, cancel: cancel)
            if !state.stopped, state.timer.map({ deadline < $0.at }) ?? true { arm(&state, at: deadline) }
            return id
        }
    }

    /// Sets the timer for `at` (the one set before is cancelled).
    private func arm(_ state: inout State, at deadline: Duration) {
        state.timer?.task.cancel()
        let task = Task { [clock] in
            guard (try? await clock.sleep(deadline - clock.now())) != nil else { return }
            self.expire()
        }
        state.timer = (deadline, task)
    }

    /// Cancels what has outlasted its deadline and sets the timer for the next one.
    private func expire() {
        let now = clock.now()
        let expired: [@Sendable () -> Void] = state.withLock { state in
            state.timer = nil
            let passed = state.watched.filter { $0.value.deadline <= now }
            for id in passed.keys { state.watched[id] = nil }
            if !state.stopped, let next = state.watched.values.map(\.deadline).min() { arm(&state, at: next) }
            return passed.values.map(\.cancel)
        }
        for cancel in expired { cancel() }
    }

    private final class Flag: Sendable {
        private let value = Atomic(false)
        func set() { value.store(true, ordering: .releasing) }
        var isSet: Bool { value.load(ordering: .acquiring) }
    }
}
