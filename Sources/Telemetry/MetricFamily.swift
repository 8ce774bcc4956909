/// One metric the daemon exports: its name (Prometheus conventions: `defender_alertd_` prefix,
/// the unit in the name, `_total` on counters), type, help text and label names. Every metric
/// is listed here once (``all``); nothing else names one, so a name can never be registered
/// with two types.
public struct MetricFamily: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    public let name: String
    public let kind: Kind
    public let help: String
    public let labels: [String]
    /// A histogram's bucket bounds, in its unit (seconds for `_seconds`).
    public let buckets: [Double]
    /// The values of the last label, when they are known in advance (`result`: `ok`, `failed`):
    /// once one is counted, all are shown (at 0 until counted).
    public let values: [String]

    init(_ name: String, _ kind: Kind, _ help: String, labels: [String] = [], buckets: [Double] = [], values: [String] = []) {
        self.name = name
        self.kind = kind
        self.help = help
        self.labels = labels
        self.buckets = buckets
        self.values = values
    }

    public var description: String { name }

    /// The family name OpenMetrics uses: a counter's name without `_total`.
    var openMetricsName: String {
        kind == .counter && name.hasSuffix("_total") ? String(name.dropLast(6)) : name
    }
}

extension MetricFamily {
    static let tenantAPI = ["tenant", "api"]
    /// A tenant's series of one record stream: `records` is `alerts` or `incidents`.
    static let tenantStream = ["tenant", "api", "records"]

    // MARK: Alerts

    public static let alertsFetched = MetricFamily(
        "defender_alertd_alerts_fetched_total", .counter,
        "Elements of answers read from the API (records and unreadable elements), re-reads of the overlap included; records: alerts or incidents.",
        labels: tenantStream)
    public static let alertsAdmitted = MetricFamily(
        "defender_alertd_alerts_admitted_total", .counter,
        "Alerts or incidents (with forward = \"updates\", versions) seen for the first time and queued for the sinks; records: alerts or incidents.",
        labels: tenantStream)
    public static let alertsDuplicates = MetricFamily(
        "defender_alertd_alerts_duplicates_total", .counter,
        "Alerts read again (the overlap, a reconciliation sweep) and skipped because they were already admitted.",
        labels: tenantStream)
    public static let alertsQuarantined = MetricFamily(
        "defender_alertd_alerts_quarantined_total", .counter,
        "Elements of alerts answers that are not readable alerts, kept in quarantine (`defender-alertd state quarantine`).",
        labels: tenantStream)
    public static let alertsFoundByReconciliation = MetricFamily(
        "defender_alertd_alerts_found_by_reconciliation_total", .counter,
        "Alerts the normal polls missed (visible later than the overlap) and a reconciliation sweep delivered.",
        labels: tenantStream)
    public static let reconciliationSweeps = MetricFamily(
        "defender_alertd_reconciliation_sweeps_total", .counter,
        "Reconciliation sweeps that ended, by result (ok, failed).",
        labels: tenantStream + ["result"], values: ["ok", "failed"])
    public static let visibilityLag = MetricFamily(
        "defender_alertd_visibility_lag_seconds", .histogram,
        "Time from an alert's lastUpdateTime to the poll that first saw it (by the API server's clock); the history of a first poll is not counted.",
        labels: tenantStream, buckets: [1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400])

    // MARK: Polls and the API

    public static let pollDuration = MetricFamily(
        "defender_alertd_poll_duration_seconds", .histogram,
        "Duration of polls that ended (completed or failed).",
        labels: tenantStream, buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600])
    public static let pollStartDelay = MetricFamily(
        "defender_alertd_poll_start_delay_seconds", .histogram,
        "How late polls started after the time they were due (all tenants together): a poll that outlasted its interval, or more polls due at once than may run.",
        buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300])
    public static let pollPages = MetricFamily(
        "defender_alertd_poll_pages", .histogram,
        "Pages of alerts read by one poll.",
        labels: tenantStream, buckets: [1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000])
    public static let polls = MetricFamily(
        "defender_alertd_polls_total", .counter,
        "Polls that ended, by result (ok, failed, paused: the outbox is over max_outbox).",
        labels: tenantStream + ["result"], values: ["ok", "failed", "paused"])
    public static let lastSuccessfulPoll = MetricFamily(
        "defender_alertd_last_successful_poll_timestamp_seconds", .gauge,
        "When the tenant's last poll completed (Unix time); 0 before the first one.",
        labels: tenantStream)
    public static let pollInterval = MetricFamily(
        "defender_alertd_poll_interval_seconds", .gauge,
        "The configured poll_interval, for alert rules.",
        labels: tenantStream)
    public static let overlap = MetricFamily(
        "defender_alertd_overlap_seconds", .gauge,
        "The tenant's configured overlap, for alert rules on the visibility lag.",
        labels: tenantStream)
    public static let watermarkAge = MetricFamily(
        "defender_alertd_watermark_age_seconds", .gauge,
        "Age of the tenant's watermark (the newest lastUpdateTime read completely), by the local clock.",
        labels: tenantStream)
    public static let apiRequests = MetricFamily(
        "defender_alertd_api_requests_total", .counter,
        "HTTP requests to the alerts API and the token endpoint, by endpoint (alerts, incidents, token) and status class (2xx, 4xx, 5xx; error: no answer).",
        labels: tenantAPI + ["endpoint", "status_class"])
    public static let apiThrottled = MetricFamily(
        "defender_alertd_api_throttled_total", .counter,
        "Answers 429 Too Many Requests from the alerts API.",
        labels: tenantAPI)
    public static let retryAfterWait = MetricFamily(
        "defender_alertd_retry_after_wait_seconds_total", .counter,
        "Time spent waiting because the API asked for it (Retry-After).",
        labels: tenantAPI)
    public static let rateBudgetWait = MetricFamily(
        "defender_alertd_rate_budget_wait_seconds_total", .counter,
        "Time spent waiting for the local call budget (rate_limit_per_minute, rate_limit_per_hour).",
        labels: tenantAPI)
    public static let tokenRequests = MetricFamily(
        "defender_alertd_token_requests_total", .counter,
        "Token requests to Entra ID.",
        labels: tenantAPI)
    public static let tokenFailures = MetricFamily(
        "defender_alertd_token_failures_total", .counter,
        "Token requests that failed, by AADSTS code (none: no code, as with a network failure).",
        labels: tenantAPI + ["code"])

    // MARK: Sinks

    public static let alertsDelivered = MetricFamily(
        "defender_alertd_alerts_delivered_total", .counter,
        "Alerts the sink confirmed.",
        labels: ["sink"])
    public static let alertsDeadLettered = MetricFamily(
        "defender_alertd_alerts_dead_lettered_total", .counter,
        "Alerts the sink refused for good, kept as dead letters (`defender-alertd state dead-letters`).",
        labels: ["sink"])
    public static let deliveryFailures = MetricFamily(
        "defender_alertd_delivery_failures_total", .counter,
        "Batches that failed to be delivered, by kind (retryable: the receiver or network failed; needs_operator: the receiver refused for a reason a person must fix).",
        labels: ["sink", "kind"], values: ["retryable", "needs_operator"])
    public static let connectionLosses = MetricFamily(
        "defender_alertd_connection_losses_total", .counter,
        "Connections the receiver closed or reset while alerts were sent, or reset after a batch was confirmed (syslog over TCP, TLS, RELP); over TCP and TLS such a later reset loses what it had not read, up to a whole batch.",
        labels: ["sink"])
    public static let sinkFailing = MetricFamily(
        "defender_alertd_sink_failing", .gauge,
        "1 while the sink's last delivery failed, else 0.",
        labels: ["sink"])
    public static let outboxDepth = MetricFamily(
        "defender_alertd_outbox_alerts", .gauge,
        "Alerts queued for the sink.",
        labels: ["sink"])
    public static let outboxOldestAge = MetricFamily(
        "defender_alertd_outbox_oldest_age_seconds", .gauge,
        "Age of the oldest alert queued for the sink (0 when none is).",
        labels: ["sink"])

    // MARK: A group on PostgreSQL

    public static let leaseHeld = MetricFamily(
        "defender_alertd_lease_held", .gauge,
        "1 while this daemon holds the tenant's lease (polls it and delivers its alerts), else 0.",
        labels: ["tenant"])
    public static let groupMembers = MetricFamily(
        "defender_alertd_group_members", .gauge,
        "Daemons of the group alive at this daemon's last renewal, itself included.")
    public static let leaseChanges = MetricFamily(
        "defender_alertd_lease_changes_total", .counter,
        "Leases this daemon acquired, released to rebalance, or lost (not renewed in time).",
        labels: ["change"], values: ["acquired", "released", "lost"])
    public static let stateDatabaseErrors = MetricFamily(
        "defender_alertd_state_database_errors_total", .counter,
        "Failed renewals of the group's leases, by kind of state error.",
        labels: ["kind"])
    public static let stateDatabaseRound = MetricFamily(
        "defender_alertd_state_database_round_seconds", .histogram,
        "Time of one renewal of the group's membership and leases in PostgreSQL (its latency).",
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])

    // MARK: The process

    public static let residentMemory = MetricFamily(
        "process_resident_memory_bytes", .gauge, "Resident memory size in bytes.")
    public static let openFileDescriptors = MetricFamily(
        "process_open_fds", .gauge, "Number of open file descriptors.")
    public static let threads = MetricFamily(
        "process_threads", .gauge, "Number of threads of the process.")
    public static let startTime = MetricFamily(
        "process_start_time_seconds", .gauge, "Start time of the process since the Unix epoch in seconds.")
    public static let buildInfo = MetricFamily(
        "defender_alertd_build_info", .gauge,
        "Always 1; the labels say which build runs.",
        labels: ["version"])

    /// Every metric, in the order of the documentation.
    public static let all: [MetricFamily] = [
        alertsFetched, alertsAdmitted, alertsDuplicates, alertsQuarantined, alertsFoundByReconciliation, reconciliationSweeps, visibilityLag,
        pollDuration, pollStartDelay, pollPages, polls, lastSuccessfulPoll, pollInterval, overlap, watermarkAge,
        apiRequests, apiThrottled, retryAfterWait, rateBudgetWait, tokenRequests, tokenFailures,
        alertsDelivered, alertsDeadLettered, deliveryFailures, connectionLosses, sinkFailing, outboxDepth, outboxOldestAge,
        leaseHeld, groupMembers, leaseChanges, stateDatabaseErrors, stateDatabaseRound,
        residentMemory, openFileDescriptors, threads, startTime, buildInfo,
    ]

    /// The families only a member of a group on PostgreSQL (`state_database`) shows.
    public static let group: Set<MetricFamily> = [leaseHeld, groupMembers, leaseChanges, stateDatabaseErrors, stateDatabaseRound]

    /// The family named `name`.
    public static func named(_ name: String) -> MetricFamily? {
        byName[name]
    }

    private static let byName = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
}
