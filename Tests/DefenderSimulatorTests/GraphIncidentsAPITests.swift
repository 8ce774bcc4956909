import DefenderSimulator
import Foundation
import OrderedJSON
import Testing
import Timekeeping

/// The simulator's Microsoft Graph `GET /v1.0/security/incidents`: incidents made of its alerts
/// (those that share an `incidentId`), in the documented envelope, shape and vocabulary, with
/// the documented query options and limits, changing when their alerts change
/// (`Tests/Fixtures/graph-incidents-page.json` and its row in the fixtures' README).
@Suite("Simulated Graph incidents")
struct GraphIncidentsAPITests {
    let harness: SimulatorHarness
    static let path = "/v1.0/security/incidents"
    static let alertsOnly = "44444444-4444-4444-4444-444444444444"

    init() throws {
        harness = try SimulatorHarness { configuration in
            configuration.scenario.backlog = 30
            configuration.scenario.backlogSpanSeconds = 3600
            configuration.apps.append(
                RegisteredApp(
                    tenantID: SimulatorHarness.tenant, clientID: Self.alertsOnly, secrets: ["alerts-only"],
                    graphRoles: ["SecurityAlert.Read.All"]))
        }
    }

    func graphToken(client: String = SimulatorHarness.client, secret: String = SimulatorHarness.secret) async throws -> String {
        let response = await harness.secretToken(["client_id": client, "client_secret": secret, "scope": "https://graph.microsoft.com/.default"])
        return try #require(try JSONValue(parsing: response.body)["access_token"]?.stringValue)
    }

    func page(_ query: String, token: String, path: String = Self.path) async throws -> JSONValue {
        let outcome = await harness.get(path, query: query, token: token)
        #expect(outcome.response.status == 200, "\(String(decoding: outcome.response.body, as: UTF8.self))")
        return try JSONValue(parsing: outcome.response.body)
    }

    func values(_ page: JSONValue) -> [JSONValue] {
        if case .array(let items)? = page["value"] { return items }
        return []
    }

    /// Every incident, following the links.
    func all(_ query: String, token: String) async throws -> [JSONValue] {
        var query = query
        var incidents: [JSONValue] = []
        while true {
            let page = try await page(query, token: token)
            incidents += values(page)
            guard let link = page["@odata.nextLink"]?.stringValue else { return incidents }
            #expect(link.hasPrefix(SimulatorHarness.base + Self.path + "?") && link.contains("$skiptoken="))
            query = String(link.split(separator: "?", maxSplits: 1)[1])
        }
    }

    func time(_ value: JSONValue?) -> Timestamp? { value?.stringValue.flatMap(Timestamp.init(parsing:)) }

    @Test func incidentsAreTheAlertsThatShareAnIncidentIdInTheDocumentedShapeNewestFirst() async throws {
        let token = try await graphToken()
        let page = try await page("$top=50", token: token)
        #expect(page["@odata.context"] == .string("\(SimulatorHarness.base)/v1.0/$metadata#security/incidents"))
        let incidents = values(page)
        let alerts = values(try await self.page("$top=1000", token: token, path: "/v1.0/security/alerts_v2"))
        let grouped = Dictionary(grouping: alerts) { $0["incidentId"]?.stringValue ?? "" }
        #expect(Set(incidents.compactMap { $0["id"]?.stringValue }) == Set(grouped.keys))
        #expect(grouped.values.contains { $0.count > 1 }, "some incidents hold several alerts")
        let fixture = try SimulatorHarness.fixture("graph-incidents-page.json")
        guard case .array(let documented)? = fixture["value"], let keys = documented.first?.keys else { Issue.record("fixture"); return }
        let severities = ["unknown", "informational", "low", "medium", "high"]
        for incident in incidents {
            #expect(incident.keys == keys, "the documented members, in order; no alerts without $expand")
            let members = grouped[incident["id"]?.stringValue ?? ""] ?? []
            #expect(["active", "inProgress", "resolved"].contains(incident["status"]?.stringValue ?? ""))
            let highest = members.compactMap { $0["severity"]?.stringValue }.max { severities.firstIndex(of: $0)! < severities.firstIndex(of: $1)! }
            #expect(incident["severity"]?.stringValue == highest, "an incident is as severe as its most severe alert")
            #expect(time(incident["lastUpdateDateTime"]) == members.compactMap { time($0["lastUpdateDateTime"]) }.max())
            #expect(time(incident["createdDateTime"]) == members.compactMap { time($0["createdDateTime"]) }.min())
            #expect(incident["tenantId"] == .string(SimulatorHarness.tenant))
            #expect(incident["incidentWebUrl"]?.stringValue?.hasPrefix("https://security.microsoft.com/incident2/") == true)
        }
        let created = incidents.compactMap { time($0["createdDateTime"]) }
        #expect(created == created.sorted(by: >), "the most recent incidents first")
    }

    @Test func expandedIncidentsCarryTheirAlertsAsAlertsV2ListsThem() async throws {
        let token = try await graphToken()
        let page = try await page("$top=50&$expand=alerts", token: token)
        #expect(page["@odata.context"] == .string("\(SimulatorHarness.base)/v1.0/$metadata#security/incidents(alerts())"))
        let alerts = values(try await self.page("$top=1000", token: token, path: "/v1.0/security/alerts_v2"))
        let byID = Dictionary(uniqueKeysWithValues: alerts.compactMap { alert in alert["id"]?.stringValue.map { ($0, alert) } })
        var seen: [String] = []
        for incident in values(page) {
            #expect(incident.keys.last == "alerts")
            guard case .array(let members)? = incident["alerts"] else { Issue.record("no alerts"); continue }
            #expect(!members.isEmpty)
            for alert in members {
                #expect(alert["incidentId"] == incident["id"])
                let id = alert["id"]?.stringValue ?? ""
                #expect(byID[id] == alert, "the same object as alerts_v2's")
                seen.append(id)
            }
        }
        #expect(seen.sorted() == byID.keys.sorted(), "every alert in exactly one incident")
    }

    @Test func pagesOfFiftyAtMostFollowOneAnotherByNextLink() async throws {
        let token = try await graphToken()
        let whole = values(try await page("$top=50&$count=true", token: token))
        let paged = try await all("$top=4&$count=true", token: token)
        #expect(paged.count == whole.count && paged == whole)
        let counted = try await page("$top=4&$count=true", token: token)
        #expect(counted["@odata.count"] == .int(whole.count))
    }

    @Test(arguments: [
        ("$top=51", "The limit of '50' for Top query has been exceeded. The value from the incoming request is '51'."),
        ("$expand=evidence", "Could not find a property named 'evidence' on type 'microsoft.graph.security.incident'"),
        ("$select=id", "Query option '$select' is not allowed. Allowed query options: $count, $filter, $skip, $top, $expand, $orderby."),
        ("$orderby=severity", "order by lastUpdateDateTime or createdDateTime"),
        (
            "$filter=serviceSource%20eq%20'microsoftDefenderForEndpoint'",
            "Could not find a property named 'serviceSource' on type 'microsoft.graph.security.incident'"
        ),
    ])
    func aQueryGraphDoesNotTakeIsA400(query: String, message: String) async throws {
        let outcome = await harness.get(Self.path, query: query, token: try await graphToken())
        #expect(outcome.response.status == 400)
        let error = try JSONValue(parsing: outcome.response.body)["error"]
        #expect(error?["message"]?.stringValue?.contains(message) == true, "\(String(decoding: outcome.response.body, as: UTF8.self))")
    }

    @Test func aWindowOnTheUpdateTimeOldestFirstAsElasticAsksForIt() async throws {
        let token = try await graphToken()
        let whole = values(try await page("$top=50", token: token))
        let times = whole.compactMap { time($0["lastUpdateDateTime"]) }.sorted()
        let from = times[times.count / 2]
        let window = try await all("$top=5&$filter=lastUpdateDateTime%20ge%20\(from.description)&$orderby=lastUpdateDateTime%20asc", token: token)
        let got = window.compactMap { time($0["lastUpdateDateTime"]) }
        #expect(got == got.sorted() && got.allSatisfy { $0 >= from })
        #expect(got.count == times.filter { $0 >= from }.count)
        let high = values(try await page("$top=50&$filter=severity%20eq%20'high'%20and%20status%20eq%20'active'", token: token))
        #expect(high.count == whole.filter { $0["severity"] == .string("high") && $0["status"] == .string("active") }.count)
    }

    @Test func anIncidentChangesWhenItsAlertsDo() async throws {
        let token = try await graphToken()
        let expanded = values(try await page("$top=50&$expand=alerts", token: token))
        let incident = try #require(expanded.first { if case .array(let alerts)? = $0["alerts"] { return alerts.count > 1 } else { return false } })
        guard case .array(let members)? = incident["alerts"] else { return }
        let id = try #require(incident["id"]?.stringValue)
        let later = SimulatorHarness.start.adding(seconds: 600)
        harness.clock.advance(seconds: 600 + Double(members.count))
        for (index, alert) in members.enumerated() {
            try await harness.simulator.updateAlert(
                id: alert["id"]?.stringValue ?? "",
                changes: [
                    ("status", .string("Resolved")), ("classification", .string("TruePositive")),
                    ("determination", .string("Malware")),
                ],
                at: later.adding(seconds: Double(index)))
            let now = values(try await page("$top=50", token: token)).first { $0["id"] == .string(id) }
            #expect(time(now?["lastUpdateDateTime"]) == later.adding(seconds: Double(index)), "an alert's update is its incident's")
            let last = index == members.count - 1
            #expect(now?["status"] == .string(last ? "resolved" : "active"), "resolved once every alert is")
            #expect(now?["classification"] == (last ? .string("truePositive") : .null))
            #expect(now?["determination"] == (last ? .string("malware") : .null))
        }
        let since = values(try await page("$top=50&$filter=lastUpdateDateTime%20ge%20\(later.description)", token: token))
        #expect(since.compactMap { $0["id"]?.stringValue } == [id])
    }

    @Test func incidentsNeedTheirOwnPermissionAndShareGraphsLimitWithAlerts() async throws {
        let alertsOnly = try await graphToken(client: Self.alertsOnly, secret: "alerts-only")
        let refused = await harness.get(Self.path, query: "$top=1", token: alertsOnly)
        #expect(refused.response.status == 403)
        let message = try JSONValue(parsing: refused.response.body)["error"]?["message"]?.stringValue ?? ""
        #expect(
            message.hasPrefix("Missing application roles. API required roles: SecurityIncident.Read.All,SecurityIncident.ReadWrite.All."),
            "\(message)")
        #expect(await harness.get("/v1.0/security/alerts_v2", query: "$top=1", token: alertsOnly).response.status == 200)
        #expect(
            await harness.get(Self.path, query: "$top=1", token: try await harness.accessToken()).response.status == 401,
            "an MDE token is no Graph token")

        let token = try await graphToken()
        var statuses: [Int] = []
        for index in 0..<150 {
            statuses.append(await harness.get(index % 2 == 0 ? Self.path : "/v1.0/security/alerts_v2", query: "$top=1", token: token).response.status)
        }
        #expect(statuses.allSatisfy { $0 == 200 })
        let limited = await harness.get(Self.path, query: "$top=1", token: token)
        #expect(limited.response.status == 429 && limited.response.header("Retry-After") != nil, "150 a minute for alerts and incidents together")
    }
}
