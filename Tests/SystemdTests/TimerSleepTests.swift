import Testing
import Timekeeping

/// The real clock's sleep: it ends, and a cancelled one ends at once (its timer goes with it).
@Suite("Timer sleep")
struct TimerSleepTests {
    // A regression that never wakes fails within the limit instead of hanging the suite.
    @Test(.timeLimit(.minutes(1)))
    func aShortSleepEnds() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        try await TimerSleep.sleep(for: .milliseconds(20))
        // Never early (a lower bound only: how late it may be is a benchmark's business).
        #expect(clock.now - start >= .milliseconds(20))
        try await TimerSleep.sleep(for: .zero)
        try await TimerSleep.sleep(for: .seconds(-1))
    }

    @Test func aCancelledSleepEndsAtOnceWithCancellationError() async throws {
        // An hour-long sleep, cancelled: the test finishing at all shows it did not wait.
        let sleeper = Task { try await TimerSleep.sleep(for: .seconds(3600)) }
        await Task.yield()
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
    }

    @Test func aSleepInACancelledTaskDoesNotStart() async throws {
        let sleeper = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await TimerSleep.sleep(for: .seconds(3600))
        }
        await #expect(throws: CancellationError.self) { try await sleeper.value }
    }

    // Five minutes: a sleep that missed its cancellation waits 600 s. The races run side by
    // side: run one after the other, their 800 task switches took more than a minute of a
    // full `make test` on 2 cores, behind the other tests' work on the cooperative pool.
    @Test(.timeLimit(.minutes(5)))
    func manySleepsRacedAndCancelledAllEnd() async throws {
        // The pattern of a deadline race: work that finishes first, the deadline cancelled.
        // Each 600-second sleep must end by cancellation, with the error that says so.
        let cancelled = await withTaskGroup(of: Int.self) { races in
            for _ in 0..<200 {
                races.addTask {
                    await withTaskGroup(of: Int.self) { group in
                        group.addTask { 0 }
                        group.addTask {
                            do {
                                try await TimerSleep.sleep(for: .seconds(600))
                                return 0
                            } catch {
                                return error is CancellationError ? 1 : 0
                            }
                        }
                        var total = await group.next() ?? 0
                        group.cancelAll()
                        while let next = await group.next() { total += next }
                        return total
                    }
                }
            }
            return await races.reduce(0, +)
        }
        #expect(cancelled == 200)
    }
}
