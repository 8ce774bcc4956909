import TestSupport
import Testing
import Timekeeping

@testable import AlertForwarder

/// Sink workers sleep until a poller queues rows for them; no signal may be lost. Waits here
/// use a clock whose sleeps never end, so only a signal (or cancellation) can end them: a lost
/// signal fails the test at its time limit instead of passing late.
@Suite("Outbox signal", .timeLimit(.minutes(1)))
struct OutboxSignalTests {
    let endless = MonotonicClock(now: { .zero }, sleep: { _ in try await Task.sleep(for: .seconds(1_000_000)) })

    @Test func aSignalSentBeforeTheWaitIsKept() async {
        let signal = OutboxSignal()
        signal.signal()
        signal.signal()  // several become one
        await signal.wait(timeout: .seconds(3600), clock: endless)
        // The second signal left no second wake-up behind: this wait ends by its timeout.
        let clock = ManualClock()
        await signal.wait(timeout: .seconds(5), clock: clock.clock)
        #expect(clock.clock.now() == .seconds(5))
    }

    @Test func aSignalWakesAWaitingWorker() async {
        let signal = OutboxSignal()
        let clock = endless
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await signal.wait(timeout: .seconds(3600), clock: clock) }
            group.addTask {
                await Task.yield()
                signal.signal()
            }
            await group.waitForAll()
        }
    }

    @Test func theTimeoutEndsAWaitWithoutASignal() async {
        let clock = ManualClock()
        await OutboxSignal().wait(timeout: .seconds(5), clock: clock.clock)
        #expect(clock.clock.now() == .seconds(5))
    }

    @Test func cancellationEndsAWait() async {
        let signal = OutboxSignal()
        let clock = endless
        let waiting = Task { await signal.wait(timeout: .seconds(3600), clock: clock) }
        waiting.cancel()
        await waiting.value
        // A wait after a cancelled one still works.
        signal.signal()
        await signal.wait(timeout: .seconds(3600), clock: clock)
    }
}
