import Timekeeping
import Dispatch

/// Ticks from a Dispatch timer as an `AsyncStream`: the first right away (after a random
/// jitter), then every `interval`. Ticks that arrive while the consumer is busy coalesce into
/// one (`bufferingNewest(1)`), so polls never overlap and never pile up.
public enum Ticker {
    public static func ticks(every interval: Duration, jitter: Duration = .zero, queue: DispatchQueue = .global()) -> AsyncStream<Void> {
        AsyncStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            // DispatchSourceTimer is thread-safe but not Sendable on Linux; it is only
            // resumed here and cancelled from onTermination.
            nonisolated(unsafe) let timer = DispatchSource.makeTimerSource(queue: queue)
            let firstDelay = jitter > .zero ? Duration.nanoseconds(Int64.random(in: 0...jitter.totalNanoseconds)) : .zero
            timer.schedule(deadline: .now() + .nanoseconds(Int(firstDelay.totalNanoseconds)),
                           repeating: .nanoseconds(Int(interval.totalNanoseconds)),
                           leeway: .milliseconds(50))
            timer.setEventHandler { continuation.yield() }
            continuation.onTermination = { _ in timer.cancel() }
            timer.resume()
        }
    }
}


extension Ticker {
    /// The same ticks from `clock`'s sleeps (a test clock moves them): the first after `first`,
    /// then every `interval`, coalescing while the consumer is busy.
    public static func ticks(every interval: Duration, first: Duration = .zero, clock: MonotonicClock) -> AsyncStream<Void> {
        AsyncStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            let task = Task {
                var wait = first
                while !Task.isCancelled {
                    do { try await clock.sleep(wait) } catch { break }
                    continuation.yield()
                    wait = interval
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
