import HeapModule
import Synchronization
import Timekeeping

/// Runs the recurring jobs of a pipeline (each tenant's polls and sweeps) from one task, on one
/// timer: the job due first is started when its time comes, in a child task; when it ends it
/// says when it is due again. A job never runs twice at once, so a poll that outlasts its
/// interval is followed by the next one at once, never by a pile of them.
///
/// A tenant costs an entry in a heap, not a task and a timer of its own: 10,000 tenants are
/// 10,000 entries and one sleeping task. At most ``maximumRunning`` jobs run at once; one due
/// beyond that starts as soon as one ends (and reports itself late).
struct JobScheduler: Sendable {
    /// One recurring job: runs once for the time it was due (`due`, on the scheduler's clock)
    /// and returns when it is due next, or `nil` when it is done for good.
    typealias Job = @Sendable (_ due: Duration) async -> Duration?

    let clock: MonotonicClock
    /// Jobs that may run at once.
    var maximumRunning = 512
    /// How long after its time a job may start, so that the timer starts the jobs due close
    /// together in one go: a thread woken for each of 167 polls a second costs twice the CPU
    /// of one woken for a few dozen at a time.
    var leeway: Duration = .zero

    /// Runs `jobs` (each first due at its `first`) until the task is cancelled or `stop()`;
    /// jobs `nudges` names are due at once, spread as first polls are (those waiting for their
    /// time; one running is left be).
    func run(_ jobs: [(first: Duration, job: Job)], nudges: JobNudges? = nil, stop: @escaping @Sendable () -> Bool) async {
        var queue = Heap(jobs.indices.map { Entry(due: jobs[$0].first, job: $0) })
        await withTaskGroup(of: Event.self) { group in
            if let nudges { group.addTask { .nudged(await nudges.next()) } }
            var running = 0
            // The times the sleeping timers wake at: a new one is set only for a job due
            // before all of them.
            var timers: [Duration] = []
            while !Task.isCancelled, !stop() {
                let now = clock.now()
                while running < maximumRunning, let first = queue.min, first.due <= now {
                    queue.removeMin()
                    running += 1
                    let job = jobs[first.job].job
                    group.addTask { .ended(job: first.job, next: await job(first.due)) }
                }
                if running < maximumRunning, let first = queue.min, timers.min().map({ first.due + leeway < $0 }) ?? true {
                    let wake = first.due + leeway
                    timers.append(wake)
                    group.addTask { [clock] in
                        try? await clock.sleep(wake - clock.now())
                        return .woke(at: wake)
                    }
                }
                if running == 0, queue.isEmpty { break }
                guard let event = await group.next() else { break }
                switch event {
                case .ended(let job, let next):
                    running -= 1
                    if let next { queue.insert(Entry(due: next, job: job)) }
                case .woke(let at):
                    timers.remove(at: timers.firstIndex(of: at)!)
                case .nudged(let nudged):
                    guard let nudges, !nudged.isEmpty else { break }
                    // Spread as first polls are: a member that takes over thousands of
                    // tenants does not ask Entra ID for thousands of tokens at once.
                    let spread = Self.firstDue(count: nudged.count, interval: nudges.window, spacing: nudges.spacing, start: clock.now())
                    let due = Dictionary(uniqueKeysWithValues: zip(nudged.sorted(), spread))
                    queue = Heap(queue.unordered.map { entry in due[entry.job].map { Entry(due: min(entry.due, $0), job: entry.job) } ?? entry })
                    group.addTask { .nudged(await nudges.next()) }
                }
            }
            group.cancelAll()
        }
    }

    /// When a recurring job of `interval` that was due at `due` and ended at `now` is due next:
    /// the next time on its grid; one it missed while it ran is made up at once, never more.
    static func next(after due: Duration, every interval: Duration, now: Duration) -> Duration {
        var next = due + interval
        if next + interval <= now { next += interval * Int((now - next) / interval) }
        return next
    }

    /// When each of `count` jobs of `interval` is first due, from `start`: `spacing` apart, or
    /// evenly over the interval when there are more than fit in it at that spacing, so that a
    /// daemon with thousands of tenants does not send thousands of requests (for a token
    /// first) at once, and their polls stay spread from then on.
    static func firstDue(count: Int, interval: Duration, spacing: Duration, start: Duration) -> [Duration] {
        guard count > 1 else { return Array(repeating: start, count: count) }
        let window = min(interval, spacing * count)
        return (0..<count).map { start + window * $0 / count }
    }

    private struct Entry: Comparable {
        var due: Duration
        var job: Int

        static func < (left: Entry, right: Entry) -> Bool { (left.due, left.job) < (right.due, right.job) }
    }

    private enum Event: Sendable {
        case ended(job: Int, next: Duration?)
        case woke(at: Duration)
        /// Jobs due at once (none: the scheduler is stopping).
        case nudged(Set<Int>)
    }
}

/// Jobs to start at once, by their index in the scheduler's list: a group member that takes a
/// tenant's lease polls it now, not up to an interval later.
final class JobNudges: Sendable {
    /// How jobs nudged together are spread: `spacing` apart, or evenly over `window` when more
    /// are nudged than fit in it (``JobScheduler/firstDue(count:interval:spacing:start:)``).
    let spacing: Duration
    let window: Duration

    init(spacing: Duration, window: Duration) {
        self.spacing = spacing
        self.window = window
    }

    private struct State {
        var jobs: Set<Int> = []
        var waiting: CheckedContinuation<Set<Int>, Never>?
    }

    private let state = Mutex(State())

    /// `jobs` are due now.
    func nudge(_ jobs: some Sequence<Int>) {
        let resumed = state.withLock { state -> (CheckedContinuation<Set<Int>, Never>, Set<Int>)? in
            state.jobs.formUnion(jobs)
            guard let waiting = state.waiting, !state.jobs.isEmpty else { return nil }
            defer { (state.jobs, state.waiting) = ([], nil) }
            return (waiting, state.jobs)
        }
        if let (waiting, jobs) = resumed { waiting.resume(returning: jobs) }
    }

    /// The jobs nudged since the last call, once there are any; none when the task is cancelled.
    func next() async -> Set<Int> {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Set<Int>? in
                    guard state.jobs.isEmpty, !Task.isCancelled else {
                        defer { state.jobs = [] }
                        return state.jobs
                    }
                    state.waiting = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiting = state.withLock { state in
                defer { state.waiting = nil }
                return state.waiting
            }
            waiting?.resume(returning: [])
        }
    }
}
