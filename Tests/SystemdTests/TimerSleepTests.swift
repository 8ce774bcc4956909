import Testing
import Timekeeping

/// The real clock's sleep: it ends, and a cancelled one ends at once (its timer goes with it).
@Suite("Timer sleep")
struct TimerSleepTests {
    @Test func aShortSleepEnds() async throws {
        try await TimerSleep.sleep(for: .milliseconds(1))
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

    @Test func manySleepsRacedAndCancelledAllEnd() async throws {
        // The pattern of a deadline race: work that finishes first, the deadline cancelled.
        for _ in 0..<200 {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {}
                group.addTask { try? await TimerSleep.sleep(for: .seconds(600)) }
                await group.next()
                group.cancelAll()
            }
        }
    }
}
