import DefenderAPI
import Foundation
import Logging
import Telemetry
import Timekeeping

/// Delivers one sink's outbox: reads the oldest alerts in batches (dead letters re-queued by
/// `state dead-letters --requeue` first), sends them, and moves the sink's position past them
/// only after the sink confirmed. A failure keeps them queued and backs off with full jitter
/// up to a cap; other sinks have their own workers and carry on.
public struct SinkWorker: Sendable {
    public let name: String
    private let sink: any AlertSink
    private let store: StateStore
    private let batchSize: Int
    /// After a wake-up, how long to wait for more alerts before sending (`flush_interval`).
    private let linger: Duration
    private let backoff: Backoff
    /// The back-off when the receiver refused a whole batch for a reason a person must fix.
    private let operatorBackoff: Backoff
    private let clock: MonotonicClock
    private let random: @Sendable () -> Double
    private let progress: @Sendable () -> Void
    private let status: PipelineStatus?
    private let signal: OutboxSignal
    private let metrics: SinkMetrics
    private let logger: Logger
    /// How long an idle worker sleeps when no signal wakes it (alerts queued by a poller signal
    /// at once; this bounds the wait for alerts queued another way and keeps reporting progress).
    public static let idleInterval: Duration = .seconds(5)

    public init(name: String, sink: any AlertSink, store: StateStore, batchSize: Int = 500, linger: Duration = .zero,
                backoff: Backoff = Backoff(base: .seconds(1), cap: .seconds(300)),
                operatorBackoff: Backoff = Backoff(base: .seconds(60), cap: .seconds(900)), clock: MonotonicClock = .continuous,
                random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
                progress: @escaping @Sendable () -> Void = {}, status: PipelineStatus? = nil, signal: OutboxSignal = OutboxSignal(),
                metrics: SinkMetrics = .unobserved, logger: Logger) {
        self.metrics = metrics
        self.name = name
        self.sink = sink
        self.store = store
        self.batchSize = batchSize
        self.linger = linger
        self.backoff = backoff
        self.operatorBackoff = operatorBackoff
        self.clock = clock
        self.random = random
        self.progress = progress
        self.status = status
        self.signal = signal
        var logger = logger
        logger[metadataKey: "sink"] = "\(name)"
        self.logger = logger
    }

    /// Sends everything queued, batch by batch. Returns the alerts delivered (records refused
    /// for good are not counted: they became dead letters); throws the sink's error after the
    /// first failed batch (its alerts stay queued).
    @discardableResult
    public func drain(stopWhen shouldStop: @Sendable () -> Bool = { false }) async throws -> Int {
        var delivered = 0
        while !shouldStop() {
            let batch = try store.pending(sink: name, limit: batchSize)
            guard batch.advances else { break }
            let rejected = batch.records.isEmpty ? [] : try await sink.send(batch.records)
            try store.confirm(batch, rejected: rejected)
            for rejection in rejected {
                let record = batch.records.first { $0.id == rejection.recordID }
                logger.error("the sink refused an alert for good; it is kept as a dead letter and the alerts behind it go on (`defender-alertd state dead-letters --sink \(name)`)",
                             metadata: ["alert_id": "\(record?.alertID ?? "?")", "tenant": "\(record?.tenant ?? "?")", "reason": "\(rejection.reason)"])
            }
            if batch.requeued {
                logger.notice("re-queued dead letters sent ahead of the outbox", metadata: [
                    "delivered": "\(batch.records.count - rejected.count)", "refused_again": "\(rejected.count)",
                ])
            }
            if !rejected.isEmpty || batch.requeued { reportDeadLetters() }
            delivered += batch.records.count - rejected.count
            metrics.delivered(batch.records.count - rejected.count, deadLettered: rejected.count)
            progress()
        }
        return delivered
    }

    /// Runs until `shouldStop` (graceful shutdown) or cancellation: drains, waits, backs off.
    public func run(shouldStop: @Sendable @escaping () -> Bool) async {
        var failures = 0
        reportDeadLetters()
        while !shouldStop(), !Task.isCancelled {
            progress()
            do {
                let delivered = try await drain(stopWhen: shouldStop)
                if failures > 0 {
                    logger.notice("sink recovered", metadata: ["delivered": "\(delivered)"])
                    status?.sink(name, failing: nil)
                    metrics.failing(false)
                }
                failures = 0
                await signal.wait(timeout: Self.idleInterval, clock: clock)
                if linger > .zero { try? await clock.sleep(linger) }
            } catch is CancellationError {
                return
            } catch {
                let wait = retryDelay(after: error, failures: failures)
                failures += 1
                var metadata: Logger.Metadata = ["error": "\(error)", "retry_in_ms": "\(wait.totalMilliseconds)", "failures": "\(failures)"]
                let needsOperator = (error as? SinkError)?.kind == .needsOperator
                metrics.failed(kind: needsOperator ? "needs_operator" : "retryable")
                if needsOperator {
                    metadata["needs"] = "operator"
                    logger.error("the receiver refused the batch; it needs a fix (see error), the alerts stay queued and are retried slowly", metadata: metadata)
                } else {
                    logger.error("delivery failed; the alerts stay queued", metadata: metadata)
                }
                status?.sink(name, failing: "\(error)")
                // Back off in short steps, reporting progress: a sink that is down is alive.
                var waited: Duration = .zero
                while waited < wait, !shouldStop(), !Task.isCancelled {
                    let step = min(.seconds(1), wait - waited)
                    do { try await clock.sleep(step) } catch { return }
                    waited += step
                    progress()
                }
            }
        }
    }

    /// How long to wait after a failed batch: the receiver's `Retry-After` when it gave one
    /// (never beyond the long back-off's cap), else the back-off for the kind of failure.
    func retryDelay(after error: any Error, failures: Int) -> Duration {
        let sinkError = error as? SinkError
        if let retryAfter = sinkError?.retryAfter { return min(retryAfter, operatorBackoff.cap) }
        let policy = sinkError?.kind == .needsOperator ? operatorBackoff : backoff
        return policy.delay(attempt: failures, unit: random())
    }

    private func reportDeadLetters() {
        guard let status, let count = try? store.deadLetterCounts()[name] ?? 0 else { return }
        status.sink(name, deadLetters: count)
    }
}
