import Synchronization
import TestSupport
import Testing
import Timekeeping

@testable import AlertForwarder

/// One scheduler for every tenant's polls: spread first polls, a grid that holds, no overlap,
/// no pile-up, a cap on what runs at once; and one timer for every poll's deadline.
@Suite("Job scheduler")
struct JobSchedulerTests {
    @Test func firstPollsAreSpacedOrSpreadOverTheInterval() {
        // A few tenants: 50 ms apart, the first at once.
        #expect(
            JobScheduler.firstDue(count: 3, interval: .seconds(60), spacing: .milliseconds(50), start: .seconds(7))
                == [.seconds(7), .milliseconds(7050), .milliseconds(7100)])
        #expect(JobScheduler.firstDue(count: 1, interval: .seconds(60), spacing: .milliseconds(50), start: .zero) == [.zero])
        // 10,000 tenants: evenly over the interval (167 a second), none after it.
        let many = JobScheduler.firstDue(count: 10_000, interval: .seconds(60), spacing: .milliseconds(50), start: .zero)
        #expect(many.first == .zero && many.last! < .seconds(60))
        #expect(many[1] - many[0] == .milliseconds(6))
        let perSecond = Dictionary(grouping: many) { $0.components.seconds }.values.map(\.count)
        #expect(perSecond.max()! <= 167)
    }

    @Test func theNextPollStaysOnTheGridAndOneMissedIsMadeUpOnce() {
        let interval = Duration.seconds(10)
        #expect(JobScheduler.next(after: .zero, every: interval, now: .seconds(1)) == .seconds(10))
        #expect(JobScheduler.next(after: .zero, every: interval, now: .seconds(12)) == .seconds(10))  // at once, then on the grid
        #expect(JobScheduler.next(after: .zero, every: interval, now: .seconds(25)) == .seconds(20))
        #expect(JobScheduler.next(after: .zero, every: interval, now: .seconds(35)) == .seconds(30))
    }

    @Test func jobsRunWhenDueNeverTwiceAtOnceAndAtMostTheCapTogether() async throws {
        let time = SteppedClock()
        let record = RunRecord()
        let gate = AsyncGate()
        func job(_ name: String, waits: Bool = false) -> JobScheduler.Job {
            { due in
                record.started("\(name)@\(due.components.seconds)")
                if waits { await gate.wait() }
                record.ended()
                return JobScheduler.next(after: due, every: .seconds(10), now: time.now)
            }
        }
        var scheduler = JobScheduler(clock: time.clock)
        scheduler.maximumRunning = 2
        let jobs: [(first: Duration, job: JobScheduler.Job)] = [
            (.zero, job("a")), (.seconds(1), job("b", waits: true)), (.seconds(2), job("c", waits: true)), (.seconds(3), job("d")),
        ]
        let run = Task { await scheduler.run(jobs, stop: { false }) }
        #expect(await eventually { record.log == ["a@0"] && !time.pendingSleeps.isEmpty })
        time.advance(by: .seconds(3))
        // b and c wait (the cap of 2 is reached): d, due at 3, waits for one of them.
        // (Jobs started together run in no set order.)
        #expect(await eventually { record.log.count == 3 && Set(record.log) == ["a@0", "b@1", "c@2"] && record.running == 2 })
        gate.open()
        #expect(await eventually { record.log.last == "d@3" })
        // Each runs again on its grid, once.
        time.advance(by: .seconds(9))
        #expect(await eventually { record.log.count == 7 })
        #expect(Set(record.log.suffix(3)) == ["a@10", "b@11", "c@12"])
        #expect(record.mostRunning == 2)
        run.cancel()
        await run.value
    }

    @Test func nudgedJobsRunAtOnceSpreadAndTheOthersKeepTheirTime() async throws {
        let time = SteppedClock()
        let record = RunRecord()
        func job(_ name: String) -> JobScheduler.Job {
            { due in
                record.started("\(name)@\(due.components.seconds)")
                record.ended()
                return JobScheduler.next(after: due, every: .seconds(100), now: time.now)
            }
        }
        let nudges = JobNudges(spacing: .seconds(2), window: .seconds(100))
        let scheduler = JobScheduler(clock: time.clock)
        let jobs: [(first: Duration, job: JobScheduler.Job)] = [
            (.zero, job("a")), (.seconds(50), job("b")), (.seconds(60), job("c")), (.seconds(70), job("d")),
        ]
        let run = Task { await scheduler.run(jobs, nudges: nudges, stop: { false }) }
        #expect(await eventually { record.log == ["a@0"] && !time.pendingSleeps.isEmpty })
        time.advance(by: .seconds(10))
        // A member took over b's and c's tenants at 10: b polls at once, c 2 s later; d as it was.
        nudges.nudge([2, 1])
        #expect(await eventually { record.log == ["a@0", "b@10"] })
        time.advance(by: .seconds(2))
        #expect(await eventually { record.log == ["a@0", "b@10", "c@12"] })
        // One nudged twice at once runs once.
        nudges.nudge([3, 3])
        #expect(await eventually { record.log.last == "d@12" })
        // Each goes on from the time it ran, on its own grid.
        time.advance(by: .seconds(100))
        #expect(await eventually { record.log.count == 8 })
        #expect(Set(record.log.suffix(4)) == ["a@100", "b@110", "c@112", "d@112"])
        run.cancel()
        await run.value
    }

    @Test func aConfirmationTellsTheTenantsItAddsAndNoOthers() {
        let time = SteppedClock()
        let leases = TenantLeases(clock: time.clock)
        let told = Mutex<[[String]]>([])
        leases.whenTaken { tenants in told.withLock { $0.append(tenants) } }
        leases.confirmed(["t1": 1, "t2": 1], sentAt: .zero, ttl: .seconds(30))
        leases.confirmed(["t1": 1, "t2": 1], sentAt: .seconds(5), ttl: .seconds(30))
        leases.confirmed(["t2": 1, "t3": 2], sentAt: .seconds(10), ttl: .seconds(30))
        leases.whenTaken(nil)
        leases.confirmed(["t4": 1], sentAt: .seconds(15), ttl: .seconds(30))
        #expect(told.withLock { $0 } == [["t1", "t2"], ["t3"]])
    }

    @Test func oneTimerCancelsWhatOutlastsItsDeadlineAndNothingElse() async throws {
        let time = SteppedClock()
        let watch = DeadlineWatch(clock: time.clock)
        defer { watch.stop() }
        let quick = await watch.run(timeout: .seconds(5)) {}
        #expect(!quick)
        let record = RunRecord()
        let stuck = Task {
            let passed = await watch.run(timeout: .seconds(5)) { try? await Task.sleep(for: .seconds(3600)) }
            record.started(passed ? "deadline passed" : "ended")
            return passed
        }
        // The quick one's timer (at 5 s) is still set: the stuck one, watched from 0, needs no other.
        #expect(await eventually { watch.watchedCount == 1 && time.pendingSleeps == [.seconds(5)] })
        time.advance(by: .seconds(4))
        #expect(record.log.isEmpty)
        time.advance(by: .seconds(1))
        #expect(await eventually { record.log == ["deadline passed"] })
        stuck.cancel()  // a failure above must not leave the test waiting
        #expect(await stuck.value)
        #expect(watch.watchedCount == 0)
    }

}

/// What the jobs under test did.
private final class RunRecord: Sendable {
    private let state = Mutex<(log: [String], running: Int, most: Int)>(([], 0, 0))
    var log: [String] { state.withLock { $0.log } }
    var running: Int { state.withLock { $0.running } }
    var mostRunning: Int { state.withLock { $0.most } }

    func started(_ entry: String) {
        state.withLock { state in
            state.log.append(entry)
            state.running += 1
            state.most = max(state.most, state.running)
        }
    }

    func ended() { state.withLock { $0.running -= 1 } }
}

/// Holds the jobs that wait on it until it is opened.
private final class AsyncGate: Sendable {
    private let state = Mutex<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { continuation in
            let resume = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiting.append(continuation)
                return false
            }
            if resume { continuation.resume() }
        }
    }

    func open() {
        for continuation in state.withLock({ state in
            state.open = true; defer { state.waiting = [] }; return state.waiting
        }) { continuation.resume() }
    }
}
