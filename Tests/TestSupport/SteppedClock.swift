import Foundation
import Synchronization
import Timekeeping

/// A virtual clock whose sleeps wait until a test moves time past their end (unlike
/// ``ManualClock``, whose sleeps return at once): timers, deadlines and back-offs of the code
/// under test fire exactly when the test says, never on their own.
public final class SteppedClock: Sendable {
    private struct Sleeper {
        var id: Int
        var deadline: Duration
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Duration = .zero
        var next = 0
        var sleepers: [Sleeper] = []
        var cancelled: Set<Int> = []
    }

    private let state = Mutex(State())

    public init() {}

    /// The clock to inject.
    public var clock: MonotonicClock {
        MonotonicClock(now: { self.now }, sleep: { try await self.sleep(for: $0) })
    }

    public var now: Duration { state.withLock { $0.now } }

    /// How far ahead of now each pending sleep ends.
    public var pendingSleeps: [Duration] {
        state.withLock { state in state.sleepers.map { $0.deadline - state.now } }
    }

    /// Moves time forward, waking every sleep that ends by then.
    public func advance(by duration: Duration) {
        let due = state.withLock { state -> [Sleeper] in
            state.now += duration
            let now = state.now
            defer { state.sleepers.removeAll { $0.deadline <= now } }
            return state.sleepers.filter { $0.deadline <= now }
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    private func sleep(for duration: Duration) async throws {
        let id = state.withLock { state in
            state.next += 1
            return state.next
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome = state.withLock { state -> Result<Void, any Error>? in
                    if state.cancelled.remove(id) != nil { return .failure(CancellationError()) }
                    if duration <= .zero { return .success(()) }
                    state.sleepers.append(Sleeper(id: id, deadline: state.now + duration, continuation: continuation))
                    return nil
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> Sleeper? in
                if let index = state.sleepers.firstIndex(where: { $0.id == id }) { return state.sleepers.remove(at: index) }
                state.cancelled.insert(id)
                return nil
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }
}

/// Waits until `condition` holds, checking every 10 ms of real time; false after `timeout` (a
/// safety net for a test waiting on other tasks, never what decides a pass).
public func eventually(timeout: Duration = .seconds(30), _ condition: @Sendable () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}
