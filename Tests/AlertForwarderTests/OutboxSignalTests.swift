@testable import AlertForwarder
import Testing
import Timekeeping
import TestSupport

/// Sink workers sleep until a poller queues rows for them; no signal may be lost.
@Suite("Outbox signal")
struct OutboxSignalTests {
    @Test func aSignalSentBeforeTheWaitIsKept() async {
        let signal = OutboxSignal()
        signal.signal()
        signal.signal()  // several become one
        let started = ContinuousClock.now
        await signal.wait(timeout: .seconds(30), clock: .continuous)
        #expect(ContinuousClock.now - started < .seconds(10), "the signal was not kept: the wait ran into its timeout")
        // The second signal did not leave a second wake-up behind: this wait ends by its timeout.
        let clock = ManualClock()
        await signal.wait(timeout: .seconds(5), clock: clock.clock)
        #expect(clock.clock.now() == .seconds(5))
    }

    @Test func aSignalWakesAWaitingWorker() async {
        let signal = OutboxSignal()
        let started = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await signal.wait(timeout: .seconds(30), clock: .continuous) }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(50))
                signal.signal()
            }
            await group.waitForAll()
        }
        #expect(ContinuousClock.now - started < .seconds(10), "the signal did not wake the wait")
    }

    @Test func theTimeoutEndsAWaitWithoutASignal() async {
        let clock = ManualClock()
        await OutboxSignal().wait(timeout: .seconds(5), clock: clock.clock)
        #expect(clock.clock.now() == .seconds(5))
    }

    @Test func cancellationEndsAWait() async {
        let signal = OutboxSignal()
        let waiting = Task { await signal.wait(timeout: .seconds(3600), clock: .continuous) }
        waiting.cancel()
        await waiting.value
        // A wait after a cancelled one still works.
        signal.signal()
        await signal.wait(timeout: .seconds(3600), clock: .continuous)
    }
}
