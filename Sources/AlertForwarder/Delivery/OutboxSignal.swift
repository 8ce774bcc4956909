import Synchronization
import Timekeeping

/// Wakes a sink's worker when alerts were queued for it, so an idle worker sleeps instead of
/// querying the outbox on a short timer. A signal sent while the worker is busy is kept (one
/// is enough: the worker drains everything), so none is lost.
public final class OutboxSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    public init() {}

    /// Rows were queued: wakes the waiting worker, or the next wait.
    public func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns when signalled (at once if a signal came since the last wait), after
    /// `timeout`, or when the task is cancelled.
    public func wait(timeout: Duration, clock: MonotonicClock) async {
        let signalled = state.withLock { state in
            defer { state.pending = false }
            return state.pending
        }
        if signalled { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let now = self.state.withLock { state -> Bool in
                            if state.pending {
                                state.pending = false
                                return true
                            }
                            state.waiter = continuation
                            return false
                        }
                        if now { continuation.resume() }
                    }
                } onCancel: {
                    self.signal()
                }
            }
            group.addTask { try? await clock.sleep(timeout) }
            await group.next()
            group.cancelAll()
        }
    }
}
