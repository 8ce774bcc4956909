import Foundation
import Systemd
import Telemetry
import TestSupport
import Testing

@testable import AlertForwarder

/// The metrics catalogue and the two exposition formats (the whole `/metrics` of a running
/// daemon, parsed by an independent parser, is in the end-to-end `MetricsEndpointTests`).
@Suite("Metrics: catalogue and exposition")
struct MetricsTests {
    @Test func everyMetricHasAPrometheusNameItsUnitAndHelp() {
        let names = MetricFamily.all.map(\.name)
        #expect(Set(names).count == names.count)
        for family in MetricFamily.all {
            #expect(family.name.wholeMatch(of: /[a-zA-Z_:][a-zA-Z0-9_:]*/) != nil, "\(family)")
            #expect(!family.help.isEmpty)
            switch family.kind {
            case .counter: #expect(family.name.hasSuffix("_total"), "\(family)")
            case .histogram: #expect(!family.buckets.isEmpty && family.buckets == family.buckets.sorted(), "\(family)")
            case .gauge: #expect(!family.name.hasSuffix("_total"), "\(family)")
            }
        }
    }

    @Test func thePrometheusTextHasHelpAndTypeForEachFamily() {
        let telemetry = Telemetry()
        let contoso = TenantMetrics(telemetry: telemetry, tenant: "contoso", api: "mde")
        contoso.admitted(fetched: 5, new: 3, duplicates: 2, quarantined: 0, lags: [.seconds(4), .seconds(40)])
        contoso.request(endpoint: "alerts", status: 200)
        contoso.request(endpoint: "alerts", status: nil)
        let text = telemetry.exposition(.prometheus)
        #expect(
            text.contains(
                """
                # HELP defender_alertd_alerts_admitted_total \(MetricFamily.alertsAdmitted.help)
                # TYPE defender_alertd_alerts_admitted_total counter
                defender_alertd_alerts_admitted_total{tenant="contoso",api="mde",records="alerts"} 3
                """))
        #expect(text.contains(#"defender_alertd_api_requests_total{tenant="contoso",api="mde",endpoint="alerts",status_class="2xx"} 1"#))
        #expect(text.contains(#"defender_alertd_api_requests_total{tenant="contoso",api="mde",endpoint="alerts",status_class="error"} 1"#))
        #expect(text.contains(#"defender_alertd_visibility_lag_seconds_bucket{tenant="contoso",api="mde",records="alerts",le="5.0"} 1"#))
        #expect(text.contains(#"defender_alertd_visibility_lag_seconds_bucket{tenant="contoso",api="mde",records="alerts",le="60.0"} 2"#))
        #expect(text.contains(#"defender_alertd_visibility_lag_seconds_count{tenant="contoso",api="mde",records="alerts"} 2"#))
        #expect(!text.contains("# EOF"))
    }

    @Test func openMetricsNamesCountersWithoutTotalWritesFloatBoundsAndEnds() {
        let telemetry = Telemetry()
        let metrics = TenantMetrics(telemetry: telemetry, tenant: "contoso", api: "graph")
        metrics.poll(result: "ok", duration: .milliseconds(300), pages: 3, at: Date(timeIntervalSince1970: 1_800_000_000))
        let text = telemetry.exposition(.openMetrics)
        #expect(text.contains("# TYPE defender_alertd_polls counter\n"))
        #expect(text.contains(#"defender_alertd_polls_total{tenant="contoso",api="graph",records="alerts",result="ok"} 1"#))
        #expect(text.contains(#"defender_alertd_poll_pages_bucket{tenant="contoso",api="graph",records="alerts",le="3.0"} 1"#))
        #expect(text.contains(#"defender_alertd_poll_duration_seconds_bucket{tenant="contoso",api="graph",records="alerts",le="0.5"} 1"#))
        #expect(text.hasSuffix("# EOF\n"))
        #expect(text.components(separatedBy: "# EOF").count == 2)
    }

    @Test(arguments: [
        ("application/openmetrics-text; version=1.0.0; charset=utf-8,text/plain;version=0.0.4;q=0.5", ExpositionFormat.openMetrics),
        ("application/openmetrics-text", .openMetrics),
        ("text/plain, application/openmetrics-text;q=0", .prometheus),
        ("text/plain; version=0.0.4", .prometheus),
        ("*/*", .prometheus),
        ("", .prometheus),
    ])
    func theScrapersAcceptChoosesTheFormat(accept: String, format: ExpositionFormat) {
        #expect(ExpositionFormat.negotiate(accept: accept) == format)
    }

    @Test func eachDaemonCountsInItsOwnRegistry() {
        let one = Telemetry(), other = Telemetry()
        SinkMetrics(telemetry: one, sink: "siem").delivered(7, deadLettered: 1)
        #expect(one.exposition(.prometheus).contains(#"defender_alertd_alerts_delivered_total{sink="siem"} 7"#))
        #expect(one.exposition(.prometheus).contains(#"defender_alertd_alerts_dead_lettered_total{sink="siem"} 1"#))
        #expect(!other.exposition(.prometheus).contains("siem"))
    }

    @Test func aTenantOrSinkNoLongerConfiguredLeavesNoSeriesBehind() {
        let telemetry = Telemetry()
        for sink in ["archive", "siem"] { SinkMetrics(telemetry: telemetry, sink: sink).failed(kind: "retryable") }
        for tenant in ["contoso", "fabrikam"] {
            TenantMetrics(telemetry: telemetry, tenant: tenant, api: "mde").poll(result: "ok", duration: .seconds(1), pages: 1, at: Date())
        }
        // A reload removed siem and fabrikam: a rule on sink_failing or the last poll must not fire for them.
        telemetry.retain("sink", values: ["archive"])
        telemetry.retain("tenant", values: ["contoso"])
        let text = telemetry.exposition(.prometheus)
        #expect(text.contains(#"defender_alertd_sink_failing{sink="archive"} 1"#))
        #expect(!text.contains("siem") && !text.contains("fabrikam"), "\(text)")
        #expect(text.contains(#"defender_alertd_last_successful_poll_timestamp_seconds{tenant="contoso",api="mde",records="alerts"}"#))
        // A tenant that reads incidents no more leaves no incident series behind, and its alerts'.
        TenantMetrics(telemetry: telemetry, tenant: "contoso", api: "mde", records: "incidents").poll(
            result: "ok", duration: .seconds(1), pages: 1, at: Date())
        telemetry.retain(["tenant", "records"], values: [["contoso", "alerts"]])
        let kept = telemetry.exposition(.prometheus)
        #expect(
            !kept.contains(#"records="incidents""#)
                && kept.contains(#"defender_alertd_polls_total{tenant="contoso",api="mde",records="alerts",result="ok"} 1"#))
        #expect(kept.contains(#"defender_alertd_api_requests_total"#) == text.contains(#"defender_alertd_api_requests_total"#))
        // Configured again, they start afresh.
        SinkMetrics(telemetry: telemetry, sink: "siem").delivered(2, deadLettered: 0)
        #expect(telemetry.exposition(.prometheus).contains(#"defender_alertd_alerts_delivered_total{sink="siem"} 2"#))
    }

    @Test func aHistogramIsCumulativeWithSumAndCountAndLabelValuesAreEscaped() {
        let telemetry = Telemetry()
        let metrics = TenantMetrics(telemetry: telemetry, tenant: #"a "b" \c"#, api: "mde")
        for seconds in [0.05, 0.3, 7, 9000] { metrics.poll(result: "ok", duration: .milliseconds(Int64(seconds * 1000)), pages: 1, at: Date()) }
        let text = telemetry.exposition(.prometheus)
        let labels = #"tenant="a \"b\" \\c",api="mde",records="alerts""#
        #expect(text.contains("defender_alertd_poll_duration_seconds_bucket{\(labels),le=\"0.05\"} 1\n"), "\(text)")
        #expect(text.contains("defender_alertd_poll_duration_seconds_bucket{\(labels),le=\"0.5\"} 2\n"))
        #expect(text.contains("defender_alertd_poll_duration_seconds_bucket{\(labels),le=\"10.0\"} 3\n"))
        #expect(text.contains("defender_alertd_poll_duration_seconds_bucket{\(labels),le=\"600.0\"} 3\n"))
        #expect(text.contains("defender_alertd_poll_duration_seconds_bucket{\(labels),le=\"+Inf\"} 4\n"))
        #expect(text.contains("defender_alertd_poll_duration_seconds_sum{\(labels)} 9007.35\n"))
        #expect(text.contains("defender_alertd_poll_duration_seconds_count{\(labels)} 4\n"))
        #expect(text.contains("defender_alertd_polls_total{\(labels),result=\"ok\"} 4\n"))
    }

    @Test func aSeriesIsShownOnlyOnceTouchedAndEachFamilyOnce() {
        let telemetry = Telemetry()
        #expect(telemetry.exposition(.prometheus).isEmpty)
        let contoso = TenantMetrics(telemetry: telemetry, tenant: "contoso", api: "mde")
        #expect(telemetry.exposition(.prometheus).isEmpty)
        contoso.tokenRequest(failure: 7_000_215)
        TenantMetrics(telemetry: telemetry, tenant: "fabrikam", api: "mde").tokenRequest()
        let text = telemetry.exposition(.prometheus)
        #expect(!text.contains("defender_alertd_polls_total") && !text.contains("lease"))
        #expect(text.components(separatedBy: "# TYPE defender_alertd_token_requests_total counter").count == 2)
        #expect(text.contains(#"defender_alertd_token_requests_total{tenant="contoso",api="mde"} 1"#))
        #expect(text.contains(#"defender_alertd_token_requests_total{tenant="fabrikam",api="mde"} 1"#))
        #expect(text.contains(#"defender_alertd_token_failures_total{tenant="contoso",api="mde",code="7000215"} 1"#))
        #expect(!text.contains(#"defender_alertd_token_failures_total{tenant="fabrikam""#))
    }

    @Test func theProcessIsReadFromProc() throws {
        let stats = try #require(ProcessStats.current())
        #expect(stats.residentBytes > 1_000_000 && stats.threads >= 1 && stats.openFileDescriptors >= 3)
    }
}

@Suite("Health: /healthz and the failures behind it")
struct HealthReportTests {
    @Test func aSinkOrTenantFailingLongerThanItsAllowanceIsNamedAndRecoveryClearsIt() {
        let time = ManualClock()
        let status = PipelineStatus(clock: time.clock)
        status.sink("siem", failing: "connection refused")
        status.record(tenant: "contoso", .failed("HTTP 503"))
        time.advance(by: .seconds(60))
        #expect(status.failures(longerThan: .seconds(60)).isEmpty)
        // Failing again does not restart the count.
        status.sink("siem", failing: "timed out")
        status.record(tenant: "contoso", .failed("HTTP 500"))
        time.advance(by: .seconds(1))
        #expect(
            status.failures(longerThan: .seconds(60)) == [
                PipelineStatus.Failure(component: "poller:contoso", failingFor: .seconds(61), reason: "HTTP 500"),
                PipelineStatus.Failure(component: "sink:siem", failingFor: .seconds(61), reason: "timed out"),
            ])
        status.sink("siem", failing: nil)
        status.record(tenant: "contoso", .succeeded(newAlerts: 1))
        #expect(status.failures(longerThan: .zero).isEmpty)
        // A poll paused by backpressure is no failure of the tenant.
        status.record(tenant: "contoso", .paused(outbox: 9))
        time.advance(by: .seconds(600))
        #expect(status.failures(longerThan: .seconds(60)).isEmpty)
    }

    @Test func theBodyNamesEveryStalledAndFailingPart() {
        #expect(HealthReport(stalls: [], failures: []).json == #"{"status":"ok"}"#)
        let report = HealthReport(
            stalls: [HealthMonitor.Stall(component: "poller:contoso", silentFor: .seconds(700), allowance: .seconds(670))],
            failures: [PipelineStatus.Failure(component: "sink:siem", failingFor: .seconds(620), reason: "connection refused")])
        #expect(!report.isHealthy)
        #expect(
            report.json
                == #"{"status":"unhealthy","stalled":[{"component":"poller:contoso","silent_seconds":700,"allowance_seconds":670}],"failing":[{"component":"sink:siem","failing_seconds":620,"error":"connection refused"}]}"#
        )
    }

    /// A container's probes: liveness fails only on a stall (what a restart mends, never a
    /// SIEM that is down); readiness also while the state cannot be used.
    @Test func livenessAndReadinessAreViewsOfTheSameReport() {
        let stall = HealthMonitor.Stall(component: "poller:contoso", silentFor: .seconds(700), allowance: .seconds(670))
        let failure = PipelineStatus.Failure(component: "sink:siem", failingFor: .seconds(620), reason: "connection refused")
        let failingSink = HealthReport(stalls: [], failures: [failure])
        #expect(!failingSink.passes(.health) && failingSink.passes(.live) && failingSink.passes(.ready))
        #expect(failingSink.json(for: .live) == #"{"status":"ok"}"# && failingSink.json(for: .ready) == #"{"status":"ok"}"#)

        let noState = HealthReport(stalls: [], failures: [], stateUnavailable: "PostgreSQL connection failed: connection refused")
        #expect(noState.passes(.health) && noState.passes(.live) && !noState.passes(.ready))
        #expect(
            noState.json(for: .ready) == #"{"status":"not ready","stalled":[],"state":"PostgreSQL connection failed: connection refused"}"#)

        let stalled = HealthReport(stalls: [stall], failures: [])
        #expect(!stalled.passes(.health) && !stalled.passes(.live) && !stalled.passes(.ready))
        #expect(
            stalled.json(for: .live)
                == #"{"status":"stalled","stalled":[{"component":"poller:contoso","silent_seconds":700,"allowance_seconds":670}]}"#)
        #expect(HealthReport.Probe.allCases.map(\.rawValue) == ["/healthz", "/healthz/live", "/healthz/ready"])
    }
}

@Suite("Configuration: metrics_listen, unhealthy_after, reconciliation")
struct MetricsConfigurationTests {
    let fixture = ConfigFixture()

    @Test(arguments: [
        ("127.0.0.1:9464", ListenAddress.tcp(host: "127.0.0.1", port: 9464)),
        ("[::1]:9464", .tcp(host: "::1", port: 9464)),
        ("localhost:0", .tcp(host: "localhost", port: 0)),
        ("0.0.0.0:9464", .tcp(host: "0.0.0.0", port: 9464)),
        ("unix:/run/defender-alertd/metrics.sock", .unix(path: "/run/defender-alertd/metrics.sock")),
    ])
    func listenAddresses(text: String, address: ListenAddress) throws {
        #expect(ListenAddress(parsing: text) == address)
        #expect(address.description == text)
    }

    @Test(arguments: [
        "9464", "127.0.0.1", "127.0.0.1:65536", "127.0.0.1:-1", "256.1.1.1:80", "metrics.example:9464", "::1:9464",
        "unix:relative.sock", "unix:", "http://127.0.0.1:9464", "",
    ])
    func badListenAddressesAreRefused(text: String) {
        #expect(ListenAddress(parsing: text) == nil)
    }

    @Test func aBadAddressIsNamedWithFileAndLine() throws {
        let errors = fixture.errors(
            "[service]\nmetrics_listen = \"9464\"\nunhealthy_after = \"0s\"\n" + ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        let path = fixture.directory.file("defender-alertd.toml")
        #expect(
            errors.map(\.description).contains { $0.hasPrefix("\(path):2: service.metrics_listen: \"9464\" is not a listen address") }, "\(errors)")
        #expect(errors.map(\.description).contains { $0.hasPrefix("\(path):3: service.unhealthy_after:") }, "\(errors)")
    }

    @Test func defaultsAndTurningSweepsOff() throws {
        let configuration = try fixture.load(ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        #expect(configuration.service.metricsListen == nil)
        #expect(configuration.service.unhealthyAfter == .seconds(600))
        #expect(configuration.tenants[0].reconcileEvery == .seconds(3600) && configuration.tenants[0].reconcileWindow == .seconds(86400))
        #expect(configuration.tenants[0].reconciles)
        for off in ["reconcile_every = \"0\"", "reconcile_window = \"0\""] {
            #expect(try fixture.load(ConfigFixture.tenant + "\n\(off)\n" + ConfigFixture.sink).tenants[0].reconciles == false)
        }
    }

    @Test func aWindowNoLongerThanTheOverlapIsRefused() throws {
        let errors = fixture.errors(ConfigFixture.tenant + "\noverlap = \"30m\"\nreconcile_window = \"20m\"\n" + ConfigFixture.sink)
        #expect(errors.count == 1)
        #expect(errors.first?.description.contains(":7: tenant.reconcile_window: 20m is not longer than overlap (30m)") == true, "\(errors)")
        let beyond = fixture.errors(ConfigFixture.tenant + "\nreconcile_window = \"200d\"\n" + ConfigFixture.sink)
        #expect(beyond.first?.description.contains("reaches back beyond the 180 days dedup keys are kept") == true, "\(beyond)")
    }
}
