import DefenderAPI
import Foundation
import Logging
import Synchronization
import Telemetry
import Timekeeping

/// Polls one tenant's alerts, or its incidents (``stream``): reads `lastUpdateTime ≥ watermark −
/// overlap` (or `now − lookback` on the very first run) and admits each fully read page into
/// the state database in one transaction, which also moves the stream's watermark. The watermark comes from the alerts' own
/// timestamps, never from the local clock, so clock jumps create no gaps.
public final class TenantPoller: TenantPolling {
    /// The result of one poll.
    public enum Outcome: Sendable, Equatable {
        case completed(newAlerts: Int, duplicates: Int)
        case paused(outbox: Int)
        case failed(String)
        /// In a group: another member holds the tenant's lease; this daemon did not poll.
        case standby
    }

    public let tenant: TenantConfiguration
    /// The tenant's alerts or its incidents: their watermark, keys and name in `STATUS=`.
    public let stream: RecordStream
    /// The tenant's client, reading the stream's kind.
    private let client: AlertsClient
    private let store: StateStore
    /// The outbox's depth, shared by the pipeline's pollers.
    private let outboxDepth: OutboxDepthReading
    private let sinks: [String]
    /// One of the sinks shows the alerts' headline: it is decoded at admission.
    private let storesHeadline: Bool
    private let maxOutbox: Int
    private let wallClock: @Sendable () -> Date
    private let progress: @Sendable () -> Void
    private let queued: @Sendable () -> Void
    private let status: PipelineStatus?
    private let metrics: TenantMetrics
    private let clock: MonotonicClock
    private let logger: Logger
    /// A sign-in needed (user context) is logged when it starts, then at most hourly.
    private let signInLog = Mutex(PersistentFailureLog())
    /// Whether a poll of this run has completed: the first is logged at info level, then only
    /// those that brought something (a daemon with thousands of tenants polls a few hundred
    /// times a second).
    private let completedOnce = Atomic(false)
    /// In a group: the tenant is polled only while this daemon holds its lease.
    private let leases: TenantLeases?

    /// - Parameters:
    ///   - tenant: The tenant's configuration (window, overlap, filters, sinks).
    ///   - kind: The records this poller reads (alerts, or Graph's incidents).
    ///   - clients: The tenant's token cache, rate budget and API client (shared by its streams).
    ///   - store: The state: watermark, dedup keys and outbox are written in one transaction
    ///     per page.
    ///   - sinks: The sinks each admitted alert is queued for.
    ///   - storesHeadline: One of `sinks` shows the alerts' headline
    ///     (``SinkConfiguration/showsHeadline``): it is decoded at admission.
    ///   - maxOutbox: Polling pauses while the outbox holds more.
    ///   - queued: Called after a page queued alerts (it wakes the sink workers).
    ///   - progress: Called at each poll (the watchdog's sign of life).
    ///   - leases: In a group, the leases this daemon holds: a tenant is polled only while held.
    public init(
        tenant: TenantConfiguration, kind: RecordKind = .alert, clients: TenantClients, store: StateStore, sinks: [String],
        storesHeadline: Bool = true, maxOutbox: Int,
        wallClock: @escaping @Sendable () -> Date = { Date() }, clock: MonotonicClock = .continuous,
        progress: @escaping @Sendable () -> Void = {}, queued: @escaping @Sendable () -> Void = {},
        status: PipelineStatus? = nil, metrics: TenantMetrics = .unobserved, leases: TenantLeases? = nil,
        outboxDepth: OutboxDepthReading? = nil, logger: Logger
    ) {
        self.metrics = metrics
        self.outboxDepth = outboxDepth ?? OutboxDepthReading(store: store, shared: leases != nil)
        self.leases = leases
        self.clock = clock
        self.tenant = tenant
        stream = RecordStream(tenant: tenant.name, kind: kind)
        client = clients.alerts.with(kind: kind)
        self.store = store
        self.sinks = sinks
        self.storesHeadline = storesHeadline
        self.maxOutbox = maxOutbox
        self.wallClock = wallClock
        self.progress = progress
        self.queued = queued
        self.status = status
        let logger = logger.with("tenant", tenant.name)
        self.logger = kind == .alert ? logger : logger.with("records", kind.plural)
    }

    /// One poll cycle. Never throws: failures are logged, shown in `STATUS=` and returned.
    @discardableResult
    public func pollOnce() async -> Outcome {
        progress()
        if let leases {
            guard leases.begin(tenant.name) else {
                status?.record(tenant: stream.key, .standby)
                return .standby
            }
        }
        defer { leases?.end(tenant.name) }
        let started = clock.now()
        var pages = 0
        func ended(_ result: String) { metrics.poll(result: result, duration: clock.now() - started, pages: pages, at: wallClock()) }
        var total = Admission()
        do {
            let depth = try await outboxDepth.current()
            guard depth <= maxOutbox else {
                logger.warning(
                    "the outbox holds more alerts than max_outbox: polling paused until the sinks catch up",
                    metadata: ["queued_alerts": "\(depth)", "max_outbox": "\(maxOutbox)"])
                status?.record(tenant: stream.key, .paused(outbox: depth))
                ended("paused")
                return .paused(outbox: depth)
            }
            let watermark = try await store.admission.watermark(of: stream)
            let start = tenant.pollStart(watermark: watermark, now: wallClock())
            // Said once a run: a tenant that never had an alert has no watermark at every poll.
            if watermark == nil, !completedOnce.load(ordering: .relaxed) {
                logger.notice(
                    "first poll: fetching the lookback's history",
                    metadata: ["from": "\(start)", "lookback": "\(ConfigDuration.format(tenant.lookback))"])
            }
            var windows = WatermarkProgress()
            try await client.fetch(from: .inclusive(start)) { batch in
                pages += 1
                // The watermark never passes the server's present (its Date header, else the
                // local clock) by more than a small tolerance, well below the overlap.
                let present = batch.serverTime ?? Timestamp(wallClock())
                let notAfter = present.adding(ticks: min(Duration.seconds(60), tenant.overlap / 4).totalNanoseconds / 100)
                for alert in batch.alerts where alert.lastUpdateTime > notAfter {
                    logger.warning(
                        "an alert is stamped in the future (after the server's clock); it is forwarded, and the watermark stays at the present",
                        metadata: ["alert_id": "\(alert.id)", "last_update_time": "\(alert.lastUpdateTime)", "server_time": "\(present)"])
                }
                // The first poll's history was visible long ago: its lag is not the API's.
                let admission = try await admit(batch, watermark: windows.move(after: batch, notAfter: notAfter), measuresLag: watermark != nil)
                total.newAlerts += admission.newAlerts
                total.duplicates += admission.duplicates
                progress()
                status?.record(tenant: stream.key, .polling(alertsSoFar: total.newAlerts, window: "\(batch.lower)"))
                if total.newAlerts + total.duplicates >= 1000 {
                    logger.info("backfill progress", metadata: ["alerts_so_far": "\(total.newAlerts)", "window": "\(batch.lower)"])
                }
                // The page that takes the outbox above max_outbox is the last one read: the
                // fetch ends here, its request sent ahead is cancelled. The watermark moved only
                // over the windows admitted (each in its own transaction, as a failed poll
                // leaves it), so the next poll reads the rest from there; Defender keeps it.
                if admission.queuedForSinks > 0 {
                    let depth = try await outboxDepth.current()
                    if depth > maxOutbox { throw OutboxFull(depth: depth) }
                }
            }
            if signInLog.withLock({ $0.ended() }) { logger.notice("signed in again: polling resumes") }
            let first = !completedOnce.exchange(true, ordering: .relaxed)
            logger.log(
                level: first || total.newAlerts > 0 ? .info : .debug, "poll complete",
                metadata: ["new_alerts": "\(total.newAlerts)", "duplicates": "\(total.duplicates)"])
            status?.record(tenant: stream.key, .succeeded(newAlerts: total.newAlerts))
            ended("ok")
            return .completed(newAlerts: total.newAlerts, duplicates: total.duplicates)
        } catch let full as OutboxFull {
            if signInLog.withLock({ $0.ended() }) { logger.notice("signed in again: polling resumes") }
            logger.warning(
                "outbox holds \(full.depth) queued alerts, more than max_outbox (\(maxOutbox)): this poll stops reading here and polling pauses until the sinks catch up; the rest stays in Defender and is read then",
                metadata: ["new_alerts": "\(total.newAlerts)", "duplicates": "\(total.duplicates)"])
            status?.record(tenant: stream.key, .paused(outbox: full.depth))
            ended("paused")
            return .paused(outbox: full.depth)
        } catch {
            // A stop, a reload or the poll deadline cancelled it: whatever the error it ended
            // with (a request cut short, a retry wait interrupted), it is not a failure of the
            // API. The pages read before are kept; the deadline is reported by the caller.
            if Self.isCancellation(error) {
                logger.debug("poll cancelled", metadata: ["error": "\(error)"])
                return .failed("cancelled")
            }
            logFailure("poll failed", error)
            status?.record(tenant: stream.key, .failed("\(error)"))
            ended("failed")
            return .failed("\(error)")
        }
    }

    /// Whether `error` ended a poll or a sweep because its task was cancelled (a stop, a
    /// reload, the poll deadline), not because something failed.
    static func isCancellation(_ error: any Error) -> Bool {
        if error is CancellationError || Task.isCancelled { return true }
        if case .cancelled? = error as? DefenderAPIError { return true }
        return false
    }

    /// Admits a batch (one transaction), reports what it quarantined, wakes the sinks and counts
    /// it, with the visibility lag of each new alert (`measuresLag`): from its update time to the
    /// server's present when the page was read.
    private func admit(_ batch: AlertBatch, watermark: WatermarkMove, measuresLag: Bool = true) async throws -> Admission {
        let admission = try await store.admission.admit(
            stream: stream, alerts: batch.alerts, rejected: batch.rejected, forward: tenant.forward,
            sinks: sinks, storesHeadline: storesHeadline, now: wallClock(), watermark: watermark)
        // Kept with its bytes (`defender-alertd state quarantine`), reported once; the rest of
        // the page goes on.
        for element in admission.quarantined {
            logger.error(
                "an element of the alerts response cannot be read; it is quarantined and the rest of the page goes on: \(element.reason)",
                metadata: ["element": "\(element.json.prefix(2000))", "bytes": "\(element.bytes.count)"])
        }
        if admission.queuedForSinks > 0 {
            outboxDepth.queued()
            queued()
        }
        let present = batch.serverTime ?? Timestamp(wallClock())
        metrics.admitted(
            fetched: batch.alerts.count + batch.rejected.count, new: admission.newAlerts, duplicates: admission.duplicates,
            quarantined: admission.quarantined.count, lags: measuresLag ? admission.admitted.map { Self.lag(of: $0, at: present) } : [])
        return admission
    }

    /// Logs a failed poll or sweep; a sign-in needed when it starts and then at most hourly
    /// (debug level in between), as it lasts until a person signs in.
    private func logFailure(_ what: String, _ error: any Error) {
        if (error as? StateError)?.kind == .leaseLost || Self.isWithheld(error) {
            logger.notice(
                "\(what): the tenant's lease moved to another member of the group, which goes on from the shared watermark",
                metadata: ["error": "\(error)"])
            return
        }
        guard let apiError = error as? DefenderAPIError, case .token(let tokenError) = apiError, tokenError.needsSignIn else {
            logger.error("\(what): \(error)")
            return
        }
        switch signInLog.withLock({ $0.failed(at: clock.now()) }) {
        case .write(let suppressed): logger.error("\(what): \(error)", metadata: ["repeats_not_logged": "\(suppressed)"])
        case .suppress: logger.debug("\(what) again: sign-in still needed (logged at most hourly)")
        }
    }

    /// A request the lease gate did not send.
    private static func isWithheld(_ error: any Error) -> Bool {
        guard case .transport(.withheld)? = error as? DefenderAPIError else { return false }
        return true
    }

    /// Never traps: an alert stamped in year 1 or a `Date:` from the year 2400 is outside data
    /// (the difference in ticks times 100 passes Int64 after 292 years; Duration's own
    /// arithmetic is 128-bit).
    static func lag(of alert: Alert, at present: Timestamp) -> Duration {
        let (ticks, overflow) = present.ticks.subtractingReportingOverflow(alert.lastUpdateTime.ticks)
        guard !overflow, ticks > 0 else { return overflow && present.ticks > 0 ? .seconds(Int64.max / 1_000_000_000) : .zero }
        return .nanoseconds(ticks) * 100
    }

    /// The result of a reconciliation sweep.
    public enum SweepOutcome: Sendable, Equatable {
        /// Read to the end; `found` alerts were new (missed by the polls).
        case completed(found: Int, maximumLag: Duration?)
        /// Nothing to read yet (no poll has completed, or the window is empty).
        case skipped
        case failed(String)
    }

    /// A reconciliation sweep: re-reads `reconcile_window` back from now, up to `overlap` before
    /// the watermark, which the polls no longer re-read (an alert there that is not yet admitted
    /// became visible later than `overlap` and was missed for good). Its calls have low
    /// priority in the budget; what it finds is admitted (without moving the watermark),
    /// logged with its lag and counted. `previousFound` (what the last sweep found) decides
    /// whether to suggest a larger overlap.
    public func reconcile(previousFound: Int = 0) async -> SweepOutcome {
        if let leases {
            guard leases.begin(tenant.name) else { return .skipped }
        }
        defer { leases?.end(tenant.name) }
        do {
            guard let watermark = try await store.admission.watermark(of: stream) else { return .skipped }
            let upper = watermark.adding(ticks: -tenant.overlap.ticks)
            let lower = Timestamp(wallClock()).adding(ticks: -tenant.reconcileWindow.ticks)
            guard lower < upper else { return .skipped }
            logger.info("reconciliation sweep started", metadata: ["from": "\(lower)", "to": "\(upper)"])
            var found = 0
            var maximumLag: Duration?
            try await client.with(priority: .low).fetch(from: .inclusive(lower), to: upper) { batch in
                let admission = try await admit(batch, watermark: .hold)
                let present = batch.serverTime ?? Timestamp(wallClock())
                for alert in admission.admitted {
                    let lag = Self.lag(of: alert, at: present)
                    maximumLag = max(maximumLag ?? .zero, lag)
                    logger.warning(
                        "a reconciliation sweep found an alert the polls missed: it became visible later than overlap; it is forwarded now",
                        metadata: [
                            "alert_id": "\(alert.id)", "last_update_time": "\(alert.lastUpdateTime)",
                            "lag_seconds": "\(lag.components.seconds)", "overlap": "\(ConfigDuration.format(tenant.overlap))",
                        ])
                }
                found += admission.newAlerts
            }
            metrics.sweep(result: "ok", found: found)
            logger.info("reconciliation sweep complete", metadata: ["found": "\(found)"])
            if found > 0, previousFound > 0, let maximumLag {
                // The lag seen at the sweep (an upper bound of how late they became visible), and
                // 5 minutes more, in 5-minute steps.
                let minutes = (maximumLag.components.seconds + 300 + 299) / 300 * 5
                logger.warning(
                    "two reconciliation sweeps in a row found alerts the polls missed: alerts become visible later than overlap here; consider overlap = \"\(minutes)m\" (each poll re-reads that much, which costs calls)",
                    metadata: ["overlap": "\(ConfigDuration.format(tenant.overlap))", "found": "\(found)", "previous_found": "\(previousFound)"])
            }
            return .completed(found: found, maximumLag: maximumLag)
        } catch {
            if Self.isCancellation(error) { return .failed("cancelled") }
            logFailure("reconciliation sweep failed; it is tried again later", error)
            metrics.sweep(result: "failed", found: 0)
            return .failed("\(error)")
        }
    }
}


/// Ends a poll's fetch from its batch handler: the page just admitted took the outbox above
/// `max_outbox` (`depth` alerts queued, counted once per sink).
private struct OutboxFull: Error {
    let depth: Int
}

/// What polls one tenant: a ``TenantPoller``, or (in tests) something around one.
public protocol TenantPolling: Sendable {
    var tenant: TenantConfiguration { get }
    /// What it polls: the tenant's alerts, or its incidents.
    var stream: RecordStream { get }
    /// One poll cycle; never throws.
    @discardableResult
    func pollOnce() async -> TenantPoller.Outcome
}

/// Where the watermark may go after each batch of a poll: to the newest update time (not after
/// the server's present) of a window once that window is read completely. A window read over
/// several batches (a Graph `@odata.nextLink` chain) moves it only with its last page; a
/// chain given up, to be read again in parts, leaves nothing behind (the next batch belongs to
/// another window), so the watermark never passes a part not yet read.
struct WatermarkProgress {
    private var window: (lower: WindowBound, upper: Timestamp?)?
    private var newest: Timestamp?

    mutating func move(after batch: AlertBatch, notAfter: Timestamp) -> WatermarkMove {
        if let window, window.lower != batch.lower || window.upper != batch.upper { newest = nil }
        window = (batch.lower, batch.upper)
        newest = [newest, batch.alerts.lazy.map(\.lastUpdateTime).filter { $0 <= notAfter }.max()].compactMap { $0 }.max()
        guard batch.complete else { return .hold }
        defer { (window, newest) = (nil, nil) }
        return newest.map { .to($0) } ?? .hold
    }
}
