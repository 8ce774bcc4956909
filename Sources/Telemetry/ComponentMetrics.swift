import CoreMetrics
import Foundation
import Timekeeping

/// The metrics of one tenant (labels `tenant`, `api`): what its polls, its API calls and its
/// token requests did; the series of its polls also name the record stream (`records`:
/// `alerts` or `incidents`), each polled on its own. Made once per tenant and configuration;
/// cheap to copy.
public struct TenantMetrics: Sendable {
    public let telemetry: Telemetry
    public let tenant: String
    public let api: String
    /// `alerts` or `incidents`: the stream the poll series are of.
    public let records: String

    public init(telemetry: Telemetry, tenant: String, api: String, records: String = "alerts") {
        self.telemetry = telemetry
        self.tenant = tenant
        self.api = api
        self.records = records
    }

    /// Counts into a registry nobody reads (clients made without metrics, as in tests).
    public static var unobserved: TenantMetrics { TenantMetrics(telemetry: Telemetry(), tenant: "", api: "") }

    /// The tenant's API calls and tokens (shared by its streams).
    private var labels: [String] { [tenant, api] }
    /// The stream's polls.
    private var streamLabels: [String] { [tenant, api, records] }

    /// Shows every series of the tenant's stream with no labels beyond its own at zero, so that
    /// a rule on it works before the first event (and a scrape lists them all).
    public func prepare(pollInterval: Duration, overlap: Duration) {
        for family in [MetricFamily.alertsFetched, .alertsAdmitted, .alertsDuplicates, .alertsQuarantined, .alertsFoundByReconciliation] {
            telemetry.counter(family, streamLabels).increment(by: 0)
        }
        for family in [MetricFamily.apiThrottled, .tokenRequests] { telemetry.counter(family, labels).increment(by: 0) }
        for family in [MetricFamily.retryAfterWait, .rateBudgetWait] { telemetry.fractionCounter(family, labels).increment(by: 0.0) }
        for result in ["ok", "failed", "paused"] { telemetry.counter(.polls, streamLabels + [result]).increment(by: 0) }
        for result in ["ok", "failed"] { telemetry.counter(.reconciliationSweeps, streamLabels + [result]).increment(by: 0) }
        telemetry.gauge(.pollInterval, streamLabels).set(pollInterval.inSeconds)
        telemetry.gauge(.overlap, streamLabels).set(overlap.inSeconds)
        _ = telemetry.gauge(.lastSuccessfulPoll, streamLabels)
        _ = telemetry.gauge(.watermarkAge, streamLabels)
        _ = telemetry.timer(.pollDuration, streamLabels)
        _ = telemetry.timer(.visibilityLag, streamLabels)
        _ = telemetry.histogram(.pollPages, streamLabels)
    }

    // MARK: The API

    /// An HTTP request to `endpoint` (`alerts`, `token`) ended with `status`, or with no answer.
    public func request(endpoint: String, status: Int?) {
        let statusClass = status.map { "\($0 / 100)xx" } ?? "error"
        telemetry.counter(.apiRequests, labels + [endpoint, statusClass]).increment()
    }

    public func throttled() { telemetry.counter(.apiThrottled, labels).increment() }

    public func waited(forRetryAfter wait: Duration) {
        if wait > .zero { telemetry.fractionCounter(.retryAfterWait, labels).increment(by: wait.inSeconds) }
    }

    public func waited(forBudget wait: Duration) {
        if wait > .zero { telemetry.fractionCounter(.rateBudgetWait, labels).increment(by: wait.inSeconds) }
    }

    /// A token request ended; `failure` is nil when it succeeded, else its AADSTS code (nil inside
    /// when there was none).
    public func tokenRequest(failure: Int?? = nil) {
        telemetry.counter(.tokenRequests, labels).increment()
        if let failure { telemetry.counter(.tokenFailures, labels + [failure.map(String.init) ?? "none"]).increment() }
    }

    // MARK: Polls

    /// A page was admitted: elements read, new alerts, duplicates, quarantined elements, and the
    /// visibility lag of each new alert.
    public func admitted(fetched: Int, new: Int, duplicates: Int, quarantined: Int, lags: [Duration]) {
        telemetry.counter(.alertsFetched, streamLabels).increment(by: fetched)
        telemetry.counter(.alertsAdmitted, streamLabels).increment(by: new)
        telemetry.counter(.alertsDuplicates, streamLabels).increment(by: duplicates)
        if quarantined > 0 { telemetry.counter(.alertsQuarantined, streamLabels).increment(by: quarantined) }
        guard !lags.isEmpty else { return }
        let histogram = telemetry.timer(.visibilityLag, streamLabels)
        for lag in lags { histogram.recordNanoseconds(max(0, lag.totalNanoseconds)) }
    }

    /// A poll ended (`ok`, `failed`, `paused`) after `duration` and `pages`.
    public func poll(result: String, duration: Duration, pages: Int, at now: Date) {
        telemetry.counter(.polls, streamLabels + [result]).increment()
        guard result != "paused" else { return }
        telemetry.timer(.pollDuration, streamLabels).recordNanoseconds(duration.totalNanoseconds)
        telemetry.histogram(.pollPages, streamLabels).record(pages)
        if result == "ok" { telemetry.gauge(.lastSuccessfulPoll, streamLabels).set(now.timeIntervalSince1970) }
    }

    /// A reconciliation sweep ended; `found` alerts were new.
    public func sweep(result: String, found: Int) {
        telemetry.counter(.reconciliationSweeps, streamLabels + [result]).increment()
        if found > 0 { telemetry.counter(.alertsFoundByReconciliation, streamLabels).increment(by: found) }
    }

    public func watermark(age: Duration) { telemetry.gauge(.watermarkAge, streamLabels).set(max(0, age.inSeconds)) }
}

/// The metrics of one sink (label `sink`).
public struct SinkMetrics: Sendable {
    public let telemetry: Telemetry
    public let sink: String

    public init(telemetry: Telemetry, sink: String) {
        self.telemetry = telemetry
        self.sink = sink
    }

    public static var unobserved: SinkMetrics { SinkMetrics(telemetry: Telemetry(), sink: "") }

    /// The kinds of delivery failure (label `kind`).
    public static let failureKinds = ["retryable", "needs_operator"]

    public func prepare() {
        telemetry.counter(.alertsDelivered, [sink]).increment(by: 0)
        telemetry.counter(.alertsDeadLettered, [sink]).increment(by: 0)
        for kind in Self.failureKinds { telemetry.counter(.deliveryFailures, [sink, kind]).increment(by: 0) }
        telemetry.counter(.connectionLosses, [sink]).increment(by: 0)
        failing(false)
        outbox(depth: 0, oldestAge: nil)
    }

    public func delivered(_ count: Int, deadLettered: Int) {
        telemetry.counter(.alertsDelivered, [sink]).increment(by: count)
        if deadLettered > 0 { telemetry.counter(.alertsDeadLettered, [sink]).increment(by: deadLettered) }
    }

    public func failed(kind: String) {
        telemetry.counter(.deliveryFailures, [sink, kind]).increment()
        failing(true)
    }

    /// The receiver closed or reset the connection.
    public func connectionLost() { telemetry.counter(.connectionLosses, [sink]).increment() }

    public func failing(_ failing: Bool) { telemetry.gauge(.sinkFailing, [sink]).set(failing ? 1 : 0) }

    public func outbox(depth: Int, oldestAge: Duration?) {
        telemetry.gauge(.outboxDepth, [sink]).set(depth)
        telemetry.gauge(.outboxOldestAge, [sink]).set(max(0, oldestAge?.inSeconds ?? 0))
    }
}

/// The metrics of the scheduler that starts every tenant's polls.
public struct SchedulerMetrics: Sendable {
    public let telemetry: Telemetry

    public init(telemetry: Telemetry) {
        self.telemetry = telemetry
        _ = telemetry.timer(.pollStartDelay)
    }

    /// A poll started `late` after it was due.
    public func pollStarted(late: Duration) { telemetry.timer(.pollStartDelay).recordNanoseconds(max(0, late.totalNanoseconds)) }
}

extension Telemetry {
    /// The process's own figures and the build, at a scrape.
    public func recordProcess(version: String, startedAt: Date) {
        if let stats = ProcessStats.current() {
            gauge(.residentMemory).set(stats.residentBytes)
            gauge(.openFileDescriptors).set(stats.openFileDescriptors)
            gauge(.threads).set(stats.threads)
        }
        gauge(.startTime).set(startedAt.timeIntervalSince1970)
        gauge(.buildInfo, [version]).set(1)
    }
}

/// The metrics of this daemon's part in a group on PostgreSQL.
public struct GroupMetrics: Sendable {
    public let telemetry: Telemetry

    public init(telemetry: Telemetry) {
        self.telemetry = telemetry
    }

    /// The kinds of lease change (label `change`).
    public static let changes = ["acquired", "released", "lost"]

    /// Shows the series at zero before the first event.
    public func prepare(tenants: [String]) {
        for change in Self.changes { telemetry.counter(.leaseChanges, [change]).increment(by: 0) }
        for tenant in tenants { telemetry.gauge(.leaseHeld, [tenant]).set(0) }
        _ = telemetry.gauge(.groupMembers)
        _ = telemetry.timer(.stateDatabaseRound)
    }

    /// A renewal round ended: how long it took, how many members it saw, which tenants are held.
    public func round(duration: Duration, members: Int, held: Set<String>, tenants: [String]) {
        telemetry.timer(.stateDatabaseRound).recordNanoseconds(duration.totalNanoseconds)
        telemetry.gauge(.groupMembers).set(Double(members))
        for tenant in tenants { telemetry.gauge(.leaseHeld, [tenant]).set(held.contains(tenant) ? 1 : 0) }
    }

    public func leases(_ change: String, count: Int) {
        if count > 0 { telemetry.counter(.leaseChanges, [change]).increment(by: count) }
    }

    public func failed(kind: String) { telemetry.counter(.stateDatabaseErrors, [kind]).increment() }
}
