import Dispatch
import Synchronization

/// Sleeps on a Dispatch timer that is cancelled, and freed, the moment the sleeping task is
/// cancelled.
///
/// `Task.sleep` on Linux keeps a cancelled sleep's timer and task alive until its deadline: a
/// poll raced against its 10-minute deadline every 600 ms left about a thousand of them (1 MB,
/// measured with heaptrack) before the first deadline came round. The timer counts monotonic
/// time (`DispatchTime`).
public enum TimerSleep {
    /// Returns after `duration`; throws `CancellationError` as soon as the task is cancelled.
    public static func sleep(for duration: Duration) async throws {
        let sleeper = Sleeper()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                sleeper.start(duration, continuation)
            }
        } onCancel: {
            sleeper.finish(cancelled: true)
        }
    }
}

private final class Sleeper: @unchecked Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<Void, any Error>)
        case finished(cancelled: Bool)
    }

    private let state = Mutex(State.idle)
    // Immutable after init; Dispatch sources are thread-safe.
    private let timer: DispatchSourceTimer

    init() {
        timer = DispatchSource.makeTimerSource(queue: .global())
        // The handler holds this sleeper until `finish` cancels the timer, which every path does.
        timer.setEventHandler { self.finish(cancelled: false) }
        // Resumed at once (a suspended source must never be released), firing only when scheduled.
        timer.schedule(deadline: .distantFuture)
        timer.resume()
    }

    func start(_ duration: Duration, _ continuation: CheckedContinuation<Void, any Error>) {
        let cancelledEarly = state.withLock { state -> Bool in
            if case .finished = state { return true }
            state = .waiting(continuation)
            return false
        }
        if cancelledEarly {
            continuation.resume(throwing: CancellationError())
            return
        }
        let (seconds, attoseconds) = duration.components
        let nanoseconds = max(0, min(Double(seconds) * 1e9 + Double(attoseconds) / 1e9, Double(Int.max / 2)))
        timer.schedule(deadline: .now() + .nanoseconds(Int(nanoseconds)))
    }

    func finish(cancelled: Bool) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            switch state {
            case .idle:
                state = .finished(cancelled: cancelled)
                return nil
            case .waiting(let continuation):
                state = .finished(cancelled: cancelled)
                return continuation
            case .finished:
                return nil
            }
        }
        // Drops the event handler (and its reference to this sleeper) and the timer itself.
        timer.cancel()
        if cancelled { continuation?.resume(throwing: CancellationError()) } else { continuation?.resume() }
    }
}
