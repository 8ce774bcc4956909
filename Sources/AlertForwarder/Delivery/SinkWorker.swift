import DefenderAPI
import Foundation
import Logging
import Synchronization
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
    /// Whether the sink refused every alert of the last batch it answered.
    private let refusedLastBatch = RefusalRun()
    /// How long an idle worker sleeps when no signal wakes it (alerts queued by a poller signal
    /// at once; this bounds the wait for alerts queued another way and keeps reporting progress).
    public static let idleInterval: Duration = .seconds(5)

    public init(
        name: String, sink: any AlertSink, store: StateStore, batchSize: Int = 500, linger: Duration = .zero,
        backoff: Backoff = Backoff(base: .seconds(1), cap: .seconds(300)),
        operatorBackoff: Backoff = Backoff(base: .seconds(60), cap: .seconds(900)), clock: MonotonicClock = .continuous,
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
        progress: @escaping @Sendable () -> Void = {}, status: PipelineStatus? = nil, signal: OutboxSignal = OutboxSignal(),
        metrics: SinkMetrics = .unobserved, logger: Logger
    ) {
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
            let batch = try await store.outbox.pending(sink: name, limit: batchSize)
            guard batch.advances else { break }
            let rejected: [SinkRejection]
            do throws(SinkError) {
                rejected = batch.records.isEmpty ? [] : try await sink.send(batch.records)
            } catch {
                refusedLastBatch.last.withLock { $0 = false }
                if error.connectionLost { metrics.connectionLost() }
                if error.confirmedPrefix > 0 { try await confirmPrefix(of: batch, before: error) }
                throw error
            }
            try holdIfEverythingIsRefused(batch, rejected: rejected)
            try await store.outbox.confirm(batch, rejected: rejected)
            await recorded(batch.records, rejected: rejected)
            if batch.requeued {
                logger.notice(
                    "re-queued dead letters sent ahead of the outbox",
                    metadata: [
                        "delivered": "\(batch.records.count - rejected.count)", "refused_again": "\(rejected.count)",
                    ])
                await reportDeadLetters()
            }
            delivered += batch.records.count - rejected.count
        }
        return delivered
    }

    /// Every alert of a batch refused one by one: the receiver refuses this sender (a schema it
    /// changed, a command it disabled, a format it no longer takes), not these alerts. They
    /// stay queued for a person (`needs=operator`) instead of all becoming dead letters; so
    /// does a batch of one right after such a batch (alerts trickling in one at a time). A
    /// batch with any alert taken, or a failure, ends the run. Dead letters sent again are
    /// exempt: they were refused alone before.
    private func holdIfEverythingIsRefused(_ batch: OutboxBatch, rejected: [SinkRejection]) throws(SinkError) {
        let refusedAll = !batch.requeued && !batch.records.isEmpty && rejected.count == batch.records.count
        let refusedBefore = refusedLastBatch.last.withLock { last in
            defer { last = refusedAll }
            return last
        }
        guard refusedAll, batch.records.count > 1 || refusedBefore else { return }
        throw SinkError(
            "the receiver refused every alert of the batch (\(rejected[0].reason)); it is refusing this sender, not the alerts: check the receiver and the sink's configuration",
            kind: .needsOperator)
    }

    /// Moves the sink past the records at the front of `batch` that the receiver took before
    /// `error` (and makes dead letters of those it refused for good among them), so that only
    /// the rest is sent again: one refusal or a session dropped mid-batch never re-sends what
    /// was acknowledged.
    private func confirmPrefix(of batch: OutboxBatch, before error: SinkError) async throws {
        let count = min(error.confirmedPrefix, batch.records.count)
        // The first `count` records from the same place: the log only grows at its end, so they
        // are the batch's own; anything else (never expected) is left to the next attempt.
        let prefix = try await store.outbox.pending(sink: name, limit: count)
        // Dead letters sent again and log records have ids of their own counters: they are
        // compared only with their own kind.
        guard prefix.requeued == batch.requeued, prefix.records.map(\.id) == batch.records.prefix(count).map(\.id) else {
            logger.warning(
                "the part of the batch the receiver confirmed could not be told apart; it is sent again", metadata: ["confirmed": "\(count)"])
            return
        }
        let ids = Set(prefix.records.map(\.id))
        let rejected = error.rejectedInPrefix.filter { ids.contains($0.recordID) }
        try await store.outbox.confirm(prefix, rejected: rejected)
        await recorded(prefix.records, rejected: rejected)
        logger.notice(
            "the receiver confirmed the first alerts of the batch before it failed; only the rest is sent again",
            metadata: ["confirmed": "\(count - rejected.count)", "dead_lettered": "\(rejected.count)", "remaining": "\(batch.records.count - count)"])
    }

    /// Logs, reports and counts a confirmed run of records.
    private func recorded(_ records: [OutboxRecord], rejected: [SinkRejection]) async {
        if !rejected.isEmpty {
            logger.error(deadLetterMessage(rejected.count), metadata: Self.deadLetterMetadata(rejected, of: records))
            await reportDeadLetters()
        }
        metrics.delivered(records.count - rejected.count, deadLettered: rejected.count)
        progress()
    }

    private func deadLetterMessage(_ count: Int) -> Logger.Message {
        count == 1
            ? "the sink refused an alert for good; it is kept as a dead letter and the alerts behind it go on (`defender-alertd state dead-letters --sink \(name)`)"
            : "the sink refused \(count) alerts of a batch for good; they are kept as dead letters and the alerts behind them go on (`defender-alertd state dead-letters --sink \(name)`)"
    }

    /// How many alert ids one dead-letter line names; the rest are counted (every one is listed
    /// by `state dead-letters`).
    static let alertIDsPerLine = 10

    /// One line per batch, however many of its alerts were refused: a receiver that refuses
    /// everything must not write a line per alert (10,000 alerts made 18,500 lines). The line
    /// names the first alerts (`alert_id` when there is one, as the journal's
    /// `DEFENDER_ALERT_ID`), their tenants and the distinct reasons.
    static func deadLetterMetadata(_ rejected: [SinkRejection], of records: [OutboxRecord]) -> Logger.Metadata {
        let byID = Dictionary(records.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let named = rejected.prefix(alertIDsPerLine).map { byID[$0.recordID] }
        var reasons: [String] = []
        for rejection in rejected where !reasons.contains(rejection.reason) {
            reasons.append(rejection.reason)
            if reasons.count == 3 { break }
        }
        let tenants = Set(rejected.compactMap { byID[$0.recordID]?.tenant }).sorted()
        var metadata: Logger.Metadata = [
            "dead_letters": "\(rejected.count)", "tenant": "\(tenants.joined(separator: ","))",
            "reason": "\(reasons.joined(separator: " | "))",
        ]
        if rejected.count == 1 {
            metadata["alert_id"] = "\(named.first??.alertID ?? "?")"
        } else {
            let ids = named.map { $0?.alertID ?? "?" }.joined(separator: ",")
            metadata["alert_ids"] = "\(ids)\(rejected.count > alertIDsPerLine ? ",… (\(rejected.count - alertIDsPerLine) more)" : "")"
        }
        return metadata
    }

    /// Runs until `shouldStop` (graceful shutdown) or cancellation: drains, waits, backs off.
    public func run(shouldStop: @Sendable @escaping () -> Bool) async {
        var failures = 0
        await reportDeadLetters()
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
                if (error as? SinkError)?.connectionLost == true { metadata["connection"] = "lost" }
                metrics.failed(kind: needsOperator ? "needs_operator" : "retryable")
                if let stateError = error as? StateError {
                    metadata["state"] = "\(stateError.kind)"
                    logger.error(
                        "the outbox cannot be read or confirmed; the alerts stay queued and delivery resumes when the state can be used again",
                        metadata: metadata)
                } else if needsOperator {
                    metadata["needs"] = "operator"
                    logger.error(
                        "the receiver refused the batch; it needs a fix (see error), the alerts stay queued and are retried slowly",
                        metadata: metadata)
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
    /// (never beyond the long back-off's cap), else the back-off for the kind of failure; at
    /// most ``stateRetryCap`` while the state is unavailable.
    func retryDelay(after error: any Error, failures: Int) -> Duration {
        let sinkError = error as? SinkError
        if let retryAfter = sinkError?.retryAfter { return min(retryAfter, operatorBackoff.cap) }
        let policy = sinkError?.kind == .needsOperator ? operatorBackoff : backoff
        let delay = policy.delay(attempt: failures, unit: random())
        return (error as? StateError)?.kind == .unavailable ? min(delay, Self.stateRetryCap) : delay
    }

    /// The longest wait after the state was unavailable (PostgreSQL down): a call fails at once
    /// while the state checks the server again (every 5 s), so trying often costs nothing, and
    /// delivery resumes within seconds of the server's return, not after a back-off that grew
    /// through the outage (a 10 s outage had reached 16 s of it).
    static let stateRetryCap: Duration = .seconds(5)

    private func reportDeadLetters() async {
        guard let status, let count = try? await store.deadLetters.counts()[name] ?? 0 else { return }
        status.sink(name, deadLetters: count)
    }
}

/// The state of ``SinkWorker``'s rule on batches refused whole, kept across its drains.
private final class RefusalRun: Sendable {
    let last = Mutex(false)
}
