import Foundation
import Timekeeping

/// The metrics of one tenant (labels `tenant`, `api`): what its polls, its API calls and its
/// token requests did; the series of its polls also name the record stream (`records`:
/// `alerts` or `incidents`), each polled on its own. Made once per tenant and configuration;
/// two references, cheap to copy (and held without a box of its own where an `APIObserver` is).
public struct TenantMetrics: Sendable {
    /// The tenant's API calls and tokens (shared by its streams).
    private let calls: SeriesSet
    /// The stream's polls (`records`: `alerts` or `incidents`).
    private let stream: SeriesSet

    public init(telemetry: Telemetry, tenant: String, api: String, records: String = "alerts") {
        calls = telemetry.series(MetricFamily.tenantAPI, [tenant, api])
        stream = telemetry.series(MetricFamily.tenantStream, [tenant, api, records])
    }

    /// Counts into a registry nobody reads (clients made without metrics, as in tests).
    public static var unobserved: TenantMetrics { TenantMetrics(telemetry: Telemetry(), tenant: "", api: "") }

    /// Shows every series of the tenant's stream with no labels beyond its own at zero, so that
    /// a rule on it works before the first event (and a scrape lists them all).
    public func prepare(pollInterval: Duration, overlap: Duration) {
        for family in [MetricFamily.alertsFetched, .alertsAdmitted, .alertsDuplicates, .alertsQuarantined, .alertsFoundByReconciliation] {
            stream.show(family)
        }
        for family in [MetricFamily.apiThrottled, .tokenRequests, .retryAfterWait, .rateBudgetWait] { calls.show(family) }
        for result in ["ok", "failed", "paused"] { stream.show(.polls, [result]) }
        for result in ["ok", "failed"] { stream.show(.reconciliationSweeps, [result]) }
        stream.set(.pollInterval, pollInterval.inSeconds)
        stream.set(.overlap, overlap.inSeconds)
        for family in [MetricFamily.lastSuccessfulPoll, .watermarkAge, .pollDuration, .visibilityLag, .pollPages] { stream.show(family) }
    }

    // MARK: The API

    /// An HTTP request to `endpoint` (`alerts`, `token`) ended with `status`, or with no answer.
    public func request(endpoint: String, status: Int?) {
        calls.add(.apiRequests, 1, [endpoint, status.map { "\($0 / 100)xx" } ?? "error"])
    }

    public func throttled() { calls.add(.apiThrottled, 1) }

    public func waited(forRetryAfter wait: Duration) {
        if wait > .zero { calls.add(.retryAfterWait, wait.inSeconds) }
    }

    public func waited(forBudget wait: Duration) {
        if wait > .zero { calls.add(.rateBudgetWait, wait.inSeconds) }
    }

    /// A token request ended; `failure` is nil when it succeeded, else its AADSTS code (nil inside
    /// when there was none).
    public func tokenRequest(failure: Int?? = nil) {
        calls.add(.tokenRequests, 1)
        if let failure { calls.add(.tokenFailures, 1, [failure.map(String.init) ?? "none"]) }
    }

    // MARK: Polls

    /// A page was admitted: elements read, new alerts, duplicates, quarantined elements, and the
    /// visibility lag of each new alert.
    public func admitted(fetched: Int, new: Int, duplicates: Int, quarantined: Int, lags: [Duration]) {
        stream.add(.alertsFetched, Double(fetched))
        stream.add(.alertsAdmitted, Double(new))
        stream.add(.alertsDuplicates, Double(duplicates))
        if quarantined > 0 { stream.add(.alertsQuarantined, Double(quarantined)) }
        for lag in lags { stream.observe(.visibilityLag, max(0, lag.inSeconds)) }
    }

    /// A poll ended (`ok`, `failed`, `paused`) after `duration` and `pages`.
    public func poll(result: String, duration: Duration, pages: Int, at now: Date) {
        stream.add(.polls, 1, [result])
        guard result != "paused" else { return }
        stream.observe(.pollDuration, duration.inSeconds)
        stream.observe(.pollPages, Double(pages))
        if result == "ok" { stream.set(.lastSuccessfulPoll, now.timeIntervalSince1970) }
    }

    /// A reconciliation sweep ended; `found` alerts were new.
    public func sweep(result: String, found: Int) {
        stream.add(.reconciliationSweeps, 1, [result])
        if found > 0 { stream.add(.alertsFoundByReconciliation, Double(found)) }
    }

    public func watermark(age: Duration) { stream.set(.watermarkAge, max(0, age.inSeconds)) }
}

/// The metrics of one sink (label `sink`).
public struct SinkMetrics: Sendable {
    private let series: SeriesSet

    public init(telemetry: Telemetry, sink: String) {
        series = telemetry.series(["sink"], [sink])
    }

    public static var unobserved: SinkMetrics { SinkMetrics(telemetry: Telemetry(), sink: "") }

    /// The kinds of delivery failure (label `kind`).
    public static let failureKinds = ["retryable", "needs_operator"]

    public func prepare() {
        for family in [MetricFamily.alertsDelivered, .alertsDeadLettered, .connectionLosses] { series.show(family) }
        for kind in Self.failureKinds { series.show(.deliveryFailures, [kind]) }
        failing(false)
        outbox(depth: 0, oldestAge: nil)
    }

    public func delivered(_ count: Int, deadLettered: Int) {
        series.add(.alertsDelivered, Double(count))
        if deadLettered > 0 { series.add(.alertsDeadLettered, Double(deadLettered)) }
    }

    public func failed(kind: String) {
        series.add(.deliveryFailures, 1, [kind])
        failing(true)
    }

    /// The receiver closed or reset the connection.
    public func connectionLost() { series.add(.connectionLosses, 1) }

    public func failing(_ failing: Bool) { series.set(.sinkFailing, failing ? 1 : 0) }

    public func outbox(depth: Int, oldestAge: Duration?) {
        series.set(.outboxDepth, Double(depth))
        series.set(.outboxOldestAge, max(0, oldestAge?.inSeconds ?? 0))
    }
}

/// The metrics of the scheduler that starts every tenant's polls.
public struct SchedulerMetrics: Sendable {
    private let process: SeriesSet

    public init(telemetry: Telemetry) {
        process = telemetry.series([])
        process.show(.pollStartDelay)
    }

    /// A poll started `late` after it was due.
    public func pollStarted(late: Duration) { process.observe(.pollStartDelay, max(0, late.inSeconds)) }
}

extension Telemetry {
    /// The process's own figures and the build, at a scrape.
    public func recordProcess(version: String, startedAt: Date) {
        let process = series([])
        if let stats = ProcessStats.current() {
            process.set(.residentMemory, Double(stats.residentBytes))
            process.set(.openFileDescriptors, Double(stats.openFileDescriptors))
            process.set(.threads, Double(stats.threads))
        }
        process.set(.startTime, startedAt.timeIntervalSince1970)
        process.set(.buildInfo, 1, [version])
    }
}

/// The metrics of this daemon's part in a group on PostgreSQL.
public struct GroupMetrics: Sendable {
    public let telemetry: Telemetry
    private let process: SeriesSet

    public init(telemetry: Telemetry) {
        self.telemetry = telemetry
        process = telemetry.series([])
    }

    /// The kinds of lease change (label `change`).
    public static let changes = ["acquired", "released", "lost"]

    /// Shows the series at zero before the first event.
    public func prepare(tenants: [String]) {
        for change in Self.changes { process.show(.leaseChanges, [change]) }
        for tenant in tenants { telemetry.series(["tenant"], [tenant]).set(.leaseHeld, 0) }
        process.show(.groupMembers)
        process.show(.stateDatabaseRound)
    }

    /// A renewal round ended: how long it took, how many members it saw, which tenants are held.
    public func round(duration: Duration, members: Int, held: Set<String>, tenants: [String]) {
        process.observe(.stateDatabaseRound, duration.inSeconds)
        process.set(.groupMembers, Double(members))
        for tenant in tenants { telemetry.series(["tenant"], [tenant]).set(.leaseHeld, held.contains(tenant) ? 1 : 0) }
    }

    public func leases(_ change: String, count: Int) {
        if count > 0 { process.add(.leaseChanges, Double(count), [change]) }
    }

    public func failed(kind: String) { process.add(.stateDatabaseErrors, 1, [kind]) }
}
