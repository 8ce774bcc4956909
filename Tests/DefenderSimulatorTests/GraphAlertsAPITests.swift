import DefenderSimulator
import Foundation
import OrderedJSON
import Testing
import Timekeeping

/// The simulator's Microsoft Graph `GET /v1.0/security/alerts_v2`: the documented envelope,
/// shape, query options, paging, audience and errors (`docs/microsoft-apis.md` §6,
/// `Tests/Fixtures/graph-alerts-v2-page.json`).
@Suite("Simulated Graph alerts_v2")
struct GraphAlertsAPITests {
    let harness: SimulatorHarness
    static let path = "/v1.0/security/alerts_v2"

    init() throws {
        harness = try SimulatorHarness { configuration in
            configuration.scenario.backlog = 30
            configuration.scenario.backlogSpanSeconds = 3600
            configuration.apps.append(RegisteredApp(tenantID: SimulatorHarness.tenant, clientID: Self.noRoles, secrets: ["no-roles"], graphRoles: []))
        }
    }

    static let noRoles = "33333333-3333-3333-3333-333333333333"

    func graphToken() async throws -> String {
        let response = await harness.secretToken(["scope": "https://graph.microsoft.com/.default"])
        return try #require(try JSONValue(parsing: response.body)["access_token"]?.stringValue)
    }

    func page(_ query: String, token: String) async throws -> JSONValue {
        let outcome = await harness.get(Self.path, query: query, token: token)
        #expect(outcome.response.status == 200, "\(String(decoding: outcome.response.body, as: UTF8.self))")
        return try JSONValue(parsing: outcome.response.body)
    }

    func values(_ page: JSONValue) -> [JSONValue] {
        if case .array(let items)? = page["value"] { return items }
        return []
    }

    @Test func theSameAlertsInGraphsShapeNewestFirst() async throws {
        let token = try await graphToken()
        let page = try await page("$top=1000", token: token)
        let alerts = values(page)
        #expect(page["@odata.context"] == .string("\(SimulatorHarness.base)/v1.0/$metadata#security/alerts_v2"))
        #expect(alerts.count == 30)
        let mde = try await harness.alerts(query: "", token: harness.accessToken())
        #expect(Set(alerts.compactMap { $0["id"]?.stringValue }) == Set(mde.compactMap { $0["id"]?.stringValue }))
        // Every member of the documented example, in its order; Graph's vocabulary.
        let fixture = try SimulatorHarness.fixture("graph-alerts-v2-page.json")
        guard case .array(let documented)? = fixture["value"], let keys = documented.first?.keys else { Issue.record("fixture"); return }
        for alert in alerts {
            #expect(alert.keys == keys)
            #expect(alert["@odata.type"] == .string("#microsoft.graph.security.alert"))
            #expect(["new", "inProgress", "resolved", "unknown"].contains(alert["status"]?.stringValue ?? ""))
            #expect(["informational", "low", "medium", "high", "unknown"].contains(alert["severity"]?.stringValue ?? ""))
            #expect(alert["incidentId"]?.stringValue != nil, "incidentId is a string in Graph")
            guard case .array(let evidence)? = alert["evidence"] else { Issue.record("no evidence"); continue }
            #expect(evidence.first?["@odata.type"] == .string("#microsoft.graph.security.deviceEvidence"))
        }
        let times = alerts.compactMap { $0["lastUpdateDateTime"]?.stringValue.flatMap(Timestamp.init(parsing:)) }
        #expect(times == times.sorted(by: >), "Graph lists the most recent alerts first")
    }

    @Test func pagesFollowOneAnotherByNextLinkWithTheCount() async throws {
        let token = try await graphToken()
        var query = "$filter=lastUpdateDateTime%20ge%202025-03-14T08:00:00Z&$top=7&$count=true"
        var ids: [String] = []
        var pages = 0
        while true {
            let page = try await page(query, token: token)
            pages += 1
            #expect(page["@odata.count"] == .int(30))
            ids += values(page).compactMap { $0["id"]?.stringValue }
            guard let link = page["@odata.nextLink"]?.stringValue else { break }
            #expect(link.hasPrefix(SimulatorHarness.base + Self.path + "?") && link.contains("$skiptoken="))
            query = String(link.split(separator: "?", maxSplits: 1)[1])
        }
        #expect(pages == 5 && ids.count == 30 && Set(ids).count == 30)
    }

    @Test(arguments: [
        ("$expand=evidence", "Query option '$expand' is not allowed"),
        ("$orderby=createdDateTime", "Query option '$orderby' is not allowed"),
        ("$top=1001", "The limit of '1000'"),
        (
            "$filter=lastUpdateTime%20ge%202025-03-14T08:00:00Z",
            "Could not find a property named 'lastUpdateTime' on type 'microsoft.graph.security.alert'"
        ),
        ("$skiptoken=rebuilt", "use the @odata.nextLink exactly as returned"),
    ])
    func aQueryGraphDoesNotTakeIsA400InGraphsShape(query: String, message: String) async throws {
        let outcome = await harness.get(Self.path, query: query, token: try await graphToken())
        #expect(outcome.response.status == 400)
        let error = try JSONValue(parsing: outcome.response.body)["error"]
        #expect(error?["code"] == .string("BadRequest"))
        #expect(error?["message"]?.stringValue?.contains(message) == true, "\(String(decoding: outcome.response.body, as: UTF8.self))")
        #expect(error?["innerError"]?["request-id"]?.stringValue?.count == 36)
        #expect(error?["innerError"]?["date"] != nil && error?["innerError"]?["client-request-id"] != nil)
    }

    @Test func filtersUseGraphsPropertiesAndValues() async throws {
        let token = try await graphToken()
        let all = values(try await page("$top=1000", token: token))
        let high = values(
            try await page("$top=1000&$filter=severity%20eq%20'high'%20and%20serviceSource%20eq%20'microsoftDefenderForEndpoint'", token: token))
        #expect(high.count == all.filter { $0["severity"] == .string("high") }.count && !high.isEmpty)
        #expect(values(try await page("$filter=serviceSource%20eq%20'microsoftDefenderForOffice365'", token: token)).isEmpty)
    }

    @Test func eachAPIRefusesTheOthersToken() async throws {
        let mdeToken = try await harness.accessToken()
        let graph = await harness.get(Self.path, query: "$top=1", token: mdeToken)
        #expect(graph.response.status == 401)
        #expect(try JSONValue(parsing: graph.response.body)["error"]?["code"] == .string("InvalidAuthenticationToken"))
        let mde = await harness.get("/api/alerts", query: "$top=1", token: try await graphToken())
        #expect(mde.response.status == 401)
    }

    @Test func errorBodiesHaveTheRecordedShapes() async throws {
        func body(_ outcome: SimulatorOutcome) throws -> JSONValue { try JSONValue(parsing: outcome.response.body) }
        func same(_ body: JSONValue, _ fixture: String, messagePrefix: String? = nil) throws {
            let recorded = try SimulatorHarness.fixture(fixture)
            #expect(body.keys == recorded.keys && body["error"]?.keys == recorded["error"]?.keys)
            #expect(body["error"]?["innerError"]?.keys == recorded["error"]?["innerError"]?.keys)
            #expect(body["error"]?["code"] == recorded["error"]?["code"])
            let message = recorded["error"]?["message"]?.stringValue ?? ""
            #expect(body["error"]?["message"]?.stringValue?.hasPrefix(messagePrefix ?? message) == true, "\(body)")
        }
        try same(body(await harness.get(Self.path, query: "$top=1", token: try await harness.accessToken())), "graph-error-401-invalid-audience.json")
        let response = await harness.secretToken([
            "client_id": Self.noRoles, "client_secret": "no-roles", "scope": "https://graph.microsoft.com/.default",
        ])
        let token = try #require(try JSONValue(parsing: response.body)["access_token"]?.stringValue)
        try same(
            body(await harness.get(Self.path, query: "$top=1", token: token)), "graph-error-403-missing-roles.json",
            messagePrefix: "Missing application roles. API required roles: SecurityAlert.Read.All,SecurityAlert.ReadWrite.All. application roles:")
        let graph = try await graphToken()
        var limited: SimulatorOutcome?
        for _ in 0..<151 { limited = await harness.get(Self.path, query: "$top=1", token: graph) }
        try same(body(try #require(limited)), "graph-error-429.json")
    }

    @Test func graphsLimitIs150AMinute() async throws {
        let token = try await graphToken()
        var statuses: [Int] = []
        for _ in 0..<151 { statuses.append(await harness.get(Self.path, query: "$top=1", token: token).response.status) }
        #expect(statuses.prefix(150).allSatisfy { $0 == 200 })
        let limited = await harness.get(Self.path, query: "$top=1", token: token)
        #expect(statuses.last == 429 && limited.response.status == 429)
        #expect(limited.response.header("Retry-After") != nil)
        #expect(try JSONValue(parsing: limited.response.body)["error"]?["code"] == .string("TooManyRequests"))
    }
}
