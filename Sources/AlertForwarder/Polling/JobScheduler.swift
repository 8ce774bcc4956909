import HeapModule
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

    /// Runs `jobs` (each first due at its `first`) until the task is cancelled or `stop()`.
    func run(_ jobs: [(first: Duration, job: Job)], stop: @escaping @Sendable () -> Bool) async {
        var queue = Heap(jobs.indices.map { Entry(due: jobs[$0].first, job: $0) })
        await withTaskGroup(of: Event.self) { group in
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
                guard let event = await group.next() else { break }
                switch event {
                case .ended(let job, let next):
                    running -= 1
                    if let next { queue.insert(Entry(due: next, job: job)) }
                case .woke(let at):
                    timers.remove(at: timers.firstIndex(of: at)!)
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
    }
}
