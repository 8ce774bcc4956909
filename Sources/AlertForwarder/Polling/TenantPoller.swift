import DefenderAPI
import Foundation
import Logging
import Synchronization
import Timekeeping

/// Polls one tenant: reads `lastUpdateTime ≥ watermark − overlap` (or `now − lookback` on the
/// very first run) and admits each fully read page into the state database in one
/// transaction, which also moves the watermark. The watermark comes from the alerts' own
/// timestamps, never from the local clock, so clock jumps create no gaps.
public final class TenantPoller: TenantPolling {
    /// The result of one poll.
    public enum Outcome: Sendable, Equatable {
        case completed(newAlerts: Int, duplicates: Int)
        case paused(outbox: Int)
        case failed(String)
    }

    public let tenant: TenantConfiguration
    private let connection: TenantConnection
    private let store: StateStore
    private let sinks: [String]
    private let maxOutbox: Int
    private let wallClock: @Sendable () -> Date
    private let progress: @Sendable () -> Void
    private let queued: @Sendable () -> Void
    private let status: PipelineStatus?
    private let logger: Logger

    /// `queued` is called after a page queued alerts in the outbox (it wakes the sink workers).
    public init(tenant: TenantConfiguration, connection: TenantConnection, store: StateStore, sinks: [String], maxOutbox: Int,
                wallClock: @escaping @Sendable () -> Date = { Date() },
                progress: @escaping @Sendable () -> Void = {}, queued: @escaping @Sendable () -> Void = {},
                status: PipelineStatus? = nil, logger: Logger) {
        self.tenant = tenant
        self.connection = connection
        self.store = store
        self.sinks = sinks
        self.maxOutbox = maxOutbox
        self.wallClock = wallClock
        self.progress = progress
        self.queued = queued
        self.status = status
        var logger = logger
        logger[metadataKey: "tenant"] = "\(tenant.name)"
        self.logger = logger
    }

    /// One poll cycle. Never throws: failures are logged, shown in `STATUS=` and returned.
    @discardableResult
    public func pollOnce() async -> Outcome {
        progress()
        do {
            let depth = try store.outboxDepth().values.reduce(0, +)
            guard depth <= maxOutbox else {
                logger.warning("outbox holds \(depth) queued alerts, more than max_outbox (\(maxOutbox)): polling paused until the sinks catch up")
                status?.record(tenant: tenant.name, .paused(outbox: depth))
                return .paused(outbox: depth)
            }
            let watermark = try store.watermark(tenant: tenant.name)
            let start = tenant.pollStart(watermark: watermark, now: wallClock())
            if watermark == nil {
                logger.notice("first poll: fetching \(tenant.lookback.components.seconds / 3600)h of history", metadata: ["from": "\(start)"])
            }
            var total = Admission()
            var windows = WatermarkProgress()
            try await connection.alerts.fetch(from: .inclusive(start)) { batch in
                // The watermark never passes the server's present (its Date header, else the
                // local clock) by more than a small tolerance, well below the overlap.
                let present = batch.serverTime ?? Timestamp(wallClock())
                let notAfter = present.adding(ticks: min(Duration.seconds(60), tenant.overlap / 4).totalNanoseconds / 100)
                for alert in batch.alerts where alert.lastUpdateTime > notAfter {
                    logger.warning("an alert is stamped in the future (after the server's clock); it is forwarded, and the watermark stays at the present",
                                   metadata: ["alert_id": "\(alert.id)", "last_update_time": "\(alert.lastUpdateTime)", "server_time": "\(present)"])
                }
                let admission = try store.admit(tenant: tenant.name, alerts: batch.alerts, rejected: batch.rejected, forward: tenant.forward,
                                                sinks: sinks, now: wallClock(), watermark: windows.move(after: batch, notAfter: notAfter))
                // Kept with its bytes (`defender-alertd state quarantine`), reported once; the
                // rest of the page goes on.
                for element in admission.quarantined {
                    logger.error("an element of the alerts response cannot be read; it is quarantined and the rest of the page goes on: \(element.reason)",
                                 metadata: ["element": "\(element.json.prefix(2000))", "bytes": "\(element.bytes.count)"])
                }
                if admission.queuedForSinks > 0 { queued() }
                total.newAlerts += admission.newAlerts
                total.duplicates += admission.duplicates
                progress()
                status?.record(tenant: tenant.name, .polling(alertsSoFar: total.newAlerts, window: "\(batch.lower)"))
                if total.newAlerts + total.duplicates >= 1000 {
                    logger.info("backfill progress", metadata: ["alerts_so_far": "\(total.newAlerts)", "window": "\(batch.lower)"])
                }
            }
            logger.info("poll complete", metadata: ["new_alerts": "\(total.newAlerts)", "duplicates": "\(total.duplicates)"])
            status?.record(tenant: tenant.name, .succeeded(newAlerts: total.newAlerts))
            return .completed(newAlerts: total.newAlerts, duplicates: total.duplicates)
        } catch {
            // A stop, a reload or the poll deadline cancelled it: whatever the error it ended
            // with (a request cut short, a retry wait interrupted), it is not a failure of the
            // API. The pages read before are kept; the deadline is reported by the caller.
            if error is CancellationError || Task.isCancelled {
                logger.debug("poll cancelled", metadata: ["error": "\(error)"])
                return .failed("cancelled")
            }
            logger.error("poll failed: \(error)")
            status?.record(tenant: tenant.name, .failed("\(error)"))
            return .failed("\(error)")
        }
    }
}


/// What polls one tenant: a ``TenantPoller``, or (in tests) something around one.
public protocol TenantPolling: Sendable {
    var tenant: TenantConfiguration { get }
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

    mutating func move(after batch: AlertBatch, notAfter: Timestamp) -> StateStore.WatermarkMove {
        if let window, window.lower != batch.lower || window.upper != batch.upper { newest = nil }
        window = (batch.lower, batch.upper)
        newest = [newest, batch.alerts.lazy.map(\.lastUpdateTime).filter { $0 <= notAfter }.max()].compactMap { $0 }.max()
        guard batch.complete else { return .hold }
        defer { (window, newest) = (nil, nil) }
        return newest.map { .to($0) } ?? .hold
    }
}
