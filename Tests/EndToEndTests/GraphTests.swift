import Foundation
import TestSupport
import Testing

/// `api = "graph"` end to end: the daemon process reading Microsoft Graph `security/alerts_v2`
/// from the simulator process, and `test-auth` diagnosing a Graph tenant.
@Suite("Graph alerts_v2 end to end")
struct GraphTests {
    static let graph = #"api = "graph""#

    @Test func aBackfillOverSeveralNextLinkPagesArrivesWhole() throws {
        let harness = try PipelineHarness(simulatorArguments: ["--backlog", "450", "--backlog-span", "3600"])
        harness.configure(tenant: Self.graph + "\npage_size = 100")
        try harness.startDaemon()
        harness.waitUntil("450 alerts arrive") { harness.delivered().count >= 450 }
        harness.stopDaemon()
        let records = harness.deliveredAlerts()
        #expect(records.count == 450)
        #expect(Set(records.compactMap { $0.alert["id"] as? String }) == Set(try harness.simulatorAlerts().map(\.id)))
        // Graph's objects, as Graph sent them.
        #expect(
            records.allSatisfy { $0.alert["@odata.type"] as? String == "#microsoft.graph.security.alert" && $0.alert["lastUpdateDateTime"] != nil })
        #expect(records.allSatisfy { ($0.alert["evidence"] as? [[String: Any]])?.first?["deviceDnsName"] != nil })
        // Five pages at least, none from the MDE API.
        #expect(try harness.requests("graph_alerts", status: 200) >= 5)
        #expect(try harness.alertsCalls() == 0)
    }

    /// `records = ["alerts", "incidents"]`: every alert and every incident (with its alerts) is
    /// delivered once, each labelled with its kind; an incident one of whose alerts changes is
    /// delivered again, as an update (`forward = "updates"`).
    @Test func incidentsArriveBesideTheAlertsOnceEachAndAgainWhenTheyChange() throws {
        let harness = try PipelineHarness(simulatorArguments: ["--backlog", "60", "--backlog-span", "3600"])
        harness.configure(tenant: Self.graph + "\n" + #"records = ["alerts", "incidents"]"# + "\n" + #"forward = "updates""#)
        let incidents = try harness.simulatorIncidentIDs()
        #expect(incidents.count > 1 && incidents.count < 60, "the simulator groups alerts into incidents")
        try harness.startDaemon()
        harness.waitUntil("every alert and incident arrives") {
            harness.delivered().count >= 60 && harness.deliveredIncidents().count >= incidents.count
        }
        let first = harness.deliveredIncidents()
        #expect(Set(first.compactMap { $0.incident["id"] as? String }) == incidents && first.count == incidents.count)
        #expect(first.allSatisfy { $0.event == "created" })
        for (_, incident) in first {
            let alerts = incident["alerts"] as? [[String: Any]] ?? []
            #expect(!alerts.isEmpty && alerts.allSatisfy { $0["incidentId"] as? String == incident["id"] as? String })
        }
        // One alert of an incident changes: the incident is delivered again, once.
        let changed = try #require(first.first?.incident["alerts"] as? [[String: Any]]).first?["id"] as? String ?? ""
        let now = ISO8601DateFormatter().string(from: Date())
        try harness.control("POST", "alerts/\(changed)", #"{"changes": {"status": "InProgress"}, "lastUpdateTime": "\#(now)"}"#)
        harness.waitUntil("the changed incident arrives again") { harness.deliveredIncidents().count == incidents.count + 1 }
        harness.stopDaemon()
        let all = harness.deliveredIncidents()
        #expect(all.count == incidents.count + 1)
        #expect(all.last?.event == "updated" && all.last?.incident["id"] as? String == first.first?.incident["id"] as? String)
        #expect(harness.delivered().count == 61, "the alert's change arrives too, as an update")
        #expect(try harness.requests("graph_incidents", status: 200) >= 1)
    }

    // Late alerts within the overlap and updates labelled: `PipelineTests`, for both APIs.

    @Test func a429BurstIsHonoured() throws {
        let harness = try PipelineHarness(simulatorArguments: [
            "--backlog", "120", "--backlog-span", "3600", "--fault", "alerts:rate-limit:count=3,retryAfter=2",
        ])
        harness.configure(tenant: Self.graph + "\npage_size = 50")
        try harness.startDaemon()
        harness.waitUntil("120 alerts arrive") { harness.delivered().count >= 120 }
        harness.stopDaemon()
        #expect(harness.delivered().count == 120)
        #expect(try harness.requests("graph_alerts", status: 429) == 3)
        #expect(try harness.counter("callsIgnoringRetryAfter") == 0, "a call came while a Retry-After was running")
    }

    @Test func otherServicesAlertsComeFromGraphOnlyAndServiceSourceNarrowsThem() throws {
        let harness = try PipelineHarness()
        let xdrTenant = ConfigFixture.tenant.replacingOccurrences(of: #"name = "contoso""#, with: #"name = "contoso-xdr""#)
        // contoso: Graph, Endpoint alerts only; contoso-xdr: Graph, every service.
        harness.configure(
            tenant: Self.graph + "\n" + #"service_source = ["microsoftDefenderForEndpoint"]"# + "\n\n" + xdrTenant + "\n" + Self.graph
                + "\napi_url = \"\(harness.base)\"\nlogin_url = \"\(harness.base)\"\nlookback = \"1d\"")
        try harness.control("POST", "alerts", #"{"count": 4}"#)
        try harness.control("POST", "alerts", #"{"count": 3, "serviceSource": "microsoftDefenderForOffice365"}"#)
        try harness.control("POST", "alerts", #"{"count": 2, "serviceSource": "microsoftDefenderForIdentity"}"#)
        try harness.startDaemon()
        harness.waitUntil("13 alerts arrive") { harness.delivered().count >= 13 }
        harness.stopDaemon()
        let records = harness.deliveredAlerts()
        let sources = { (tenant: String) in records.filter { $0.tenant == tenant }.compactMap { $0.alert["serviceSource"] as? String }.sorted() }
        #expect(sources("contoso") == Array(repeating: "microsoftDefenderForEndpoint", count: 4))
        #expect(
            sources("contoso-xdr")
                == (Array(repeating: "microsoftDefenderForEndpoint", count: 4) + Array(repeating: "microsoftDefenderForIdentity", count: 2)
                + Array(repeating: "microsoftDefenderForOffice365", count: 3)).sorted())
        #expect(records.count == 13)
    }

    @Test func oneMDETenantAndOneGraphTenantShareTheSinks() throws {
        let harness = try PipelineHarness(simulatorArguments: ["--backlog", "40", "--backlog-span", "3600"])
        let graphTenant = ConfigFixture.tenant.replacingOccurrences(of: #"name = "contoso""#, with: #"name = "contoso-graph""#)
        harness.configure(
            tenant: "\n" + graphTenant + "\n" + Self.graph + "\napi_url = \"\(harness.base)\"\nlogin_url = \"\(harness.base)\"\nlookback = \"1d\"")
        try harness.startDaemon()
        for sink in ["a", "b"] {
            harness.waitUntil("80 alerts arrive in \(sink)") { harness.delivered(sink).count >= 80 }
        }
        harness.stopDaemon()
        let ids = Set(try harness.simulatorAlerts().map(\.id))
        for sink in ["a", "b"] {
            let records = harness.deliveredAlerts(sink)
            let mde = records.filter { $0.tenant == "contoso" }, graph = records.filter { $0.tenant == "contoso-graph" }
            #expect(mde.count == 40 && graph.count == 40, "\(sink): \(mde.count) MDE, \(graph.count) Graph")
            #expect(Set(mde.compactMap { $0.alert["id"] as? String }) == ids && Set(graph.compactMap { $0.alert["id"] as? String }) == ids)
            #expect(mde.allSatisfy { $0.alert["lastUpdateTime"] != nil } && graph.allSatisfy { $0.alert["lastUpdateDateTime"] != nil })
        }
    }
}

/// `test-auth` for a Graph tenant.
@Suite("test-auth with api = \"graph\"")
struct GraphTestAuthTests {
    let fixture = ConfigFixture()

    func run(_ simulatorArguments: [String], tenant extra: String = "") throws -> (status: Int32, stdout: String) {
        let simulator = try DaemonProcess(
            ["--port", "0", "--client-secret", ConfigFixture.canary, "--backlog", "2"] + simulatorArguments,
            executable: "defender-sim")
        defer {
            simulator.signal(SIGTERM)
            _ = simulator.waitForExit(timeout: .seconds(30))
        }
        let base = try #require(simulator.waitForLine(startingWith: "listening "), "\(simulator.stderr)")
        let config = fixture.writeConfiguration(
            ConfigFixture.tenant + "\napi = \"graph\"\napi_url = \"\(base)\"\nlogin_url = \"\(base)\"\n" + extra + "\n" + ConfigFixture.sink)
        let result = try DaemonProcess.run(["test-auth", "--config", config])
        #expect(!(result.stdout + result.stderr).contains(ConfigFixture.canary))
        return (result.status, result.stdout)
    }

    @Test func aWorkingGraphTenantPassesEveryStep() throws {
        let (status, stdout) = try run([])
        #expect(status == 0, "\(stdout)")
        #expect(stdout.contains("[ok] permissions: application roles: SecurityAlert.Read.All"), "\(stdout)")
        #expect(stdout.contains("[ok] alerts API: GET ") && stdout.contains("/v1.0/security/alerts_v2?$top=1 answered 200"), "\(stdout)")
    }

    @Test func incidentsAreCheckedWhenTheTenantAsksForThem() throws {
        let records = #"records = ["alerts", "incidents"]"#
        let (status, stdout) = try run([], tenant: records)
        #expect(status == 0, "\(stdout)")
        #expect(stdout.contains("[ok] incident permissions: SecurityIncident.Read.All granted"), "\(stdout)")
        #expect(stdout.contains("[ok] incidents API: GET ") && stdout.contains("/v1.0/security/incidents?$top=1 answered 200"), "\(stdout)")
        // Without the incident permission: the alerts pass, the incidents are named with the fix.
        let (refused, refusal) = try run(["--graph-roles", "SecurityAlert.Read.All"], tenant: records)
        #expect(refused == 1)
        #expect(
            refusal.contains("[ok] alerts API")
                && refusal.contains("[FAIL] incident permissions: application roles in the token: SecurityAlert.Read.All"), "\(refusal)")
        #expect(refusal.contains("Microsoft Graph > Application permissions > SecurityIncident.Read.All"), "\(refusal)")
        // A tenant that does not ask for incidents is not checked for them.
        let (_, alertsOnly) = try run(["--graph-roles", "SecurityAlert.Read.All"])
        #expect(!alertsOnly.contains("incident"), "\(alertsOnly)")
    }

    @Test func aTokenForTheWrongAudienceIsDiagnosed() throws {
        let (status, stdout) = try run(["--fault", "token:wrong-audience"])
        #expect(status == 1)
        #expect(
            stdout.contains("[FAIL] permissions: the token is for https://api.securitycenter.microsoft.com, not for https://graph.microsoft.com"),
            "\(stdout)")
    }

    @Test func missingGraphConsentNamesTheGraphPermission() throws {
        let (status, stdout) = try run(["--graph-roles", ""])
        #expect(status == 1)
        #expect(stdout.contains("[FAIL] permissions: application roles in the token: none"), "\(stdout)")
        #expect(stdout.contains("Microsoft Graph > Application permissions > SecurityAlert.Read.All"), "\(stdout)")
    }
}

/// `check-config` for a Graph tenant, as a person runs it.
@Suite("check-config with api = \"graph\"")
struct GraphCheckConfigTests {
    @Test func keysGraphDoesNotTakeAreNamedWithFileAndLine() throws {
        let fixture = ConfigFixture()
        let path = fixture.writeConfiguration(
            ConfigFixture.tenant + """

                api = "graph"
                expand_evidence = false
                severity = ["UnSpecified"]
                page_size = 5000

                """ + ConfigFixture.sink)
        let result = try DaemonProcess.run(["check-config", "--config", path])
        #expect(result.status == 78, "\(result.stdout)\(result.stderr)")
        for (line, text) in [
            (7, "tenant.expand_evidence: Microsoft Graph always sends the alerts' evidence"),
            (8, "tenant.severity: \"UnSpecified\" is not one of: unknown, informational, low, medium, high (\"UnSpecified\" is an MDE severity"),
            (9, "tenant.page_size: 5000 is more than the graph API returns in a page (1000)"),
        ] {
            #expect(result.stderr.contains("\(path):\(line): \(text)"), "\(result.stderr)")
        }
    }

    /// An MDE tenant asking for incidents is told where they are and what permission they need.
    @Test func incidentsWithTheMDEAPIAreRefusedWithWhatTheyNeed() throws {
        let fixture = ConfigFixture()
        let path = fixture.writeConfiguration(ConfigFixture.tenant + "\n" + #"records = ["alerts", "incidents"]"# + "\n\n" + ConfigFixture.sink)
        let result = try DaemonProcess.run(["check-config", "--config", path])
        #expect(result.status == 78, "\(result.stdout)\(result.stderr)")
        #expect(
            result.stderr.contains("tenant.records: the MDE API has no incidents") && result.stderr.contains("SecurityIncident.Read.All"),
            "\(result.stderr)")
    }
}
