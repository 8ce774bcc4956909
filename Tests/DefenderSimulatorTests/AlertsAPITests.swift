import DefenderSimulator
import Foundation
import OrderedJSON
import Testing
import Timekeeping

@Suite("Simulated alerts API")
struct AlertsAPITests {
    let harness: SimulatorHarness

    init() throws {
        harness = try SimulatorHarness { configuration in
            configuration.scenario.backlog = 30
            configuration.scenario.backlogSpanSeconds = 3600
            configuration.apps.append(
                RegisteredApp(
                    tenantID: SimulatorHarness.tenant, clientID: "22222222-2222-2222-2222-222222222222",
                    secrets: ["no-roles"], roles: []))
        }
    }

    @Test(arguments: ["/api/alerts", "/api/v1.0/alerts"])
    func listsAlertsInTheDocumentedEnvelope(path: String) async throws {
        let token = try await harness.accessToken()
        let outcome = await harness.get(path, query: "$top=5", token: token)
        #expect(outcome.response.status == 200)
        #expect(outcome.response.header("Content-Type") == "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8")
        #expect(outcome.response.header("OData-Version") == "4.0")
        let body = try JSONValue(parsing: outcome.response.body)
        #expect(body.keys == ["@odata.context", "value"])
        #expect(body["@odata.context"] == .string("\(SimulatorHarness.base)/api/$metadata#Alerts"))
        guard case .array(let alerts)? = body["value"] else { Issue.record("no value"); return }
        #expect(alerts.count == 5)
        #expect(!outcome.response.body.contains(Data("@odata.nextLink".utf8)))
    }

    @Test func resultsComeInTheOrderAskedFor() async throws {
        let token = try await harness.accessToken()
        let times = { (alerts: [JSONValue]) in alerts.compactMap { $0["lastUpdateTime"]?.stringValue.flatMap(Timestamp.init(parsing:)) } }
        let ids = { (alerts: [JSONValue]) in alerts.compactMap { $0["id"]?.stringValue } }
        let created = try await harness.alerts(query: "", token: token)
        #expect(created.count == 30)
        await harness.simulator.setResultOrder(.oldestFirst)
        #expect(try await times(harness.alerts(query: "", token: token)) == times(created).sorted())
        await harness.simulator.setResultOrder(.newestFirst)
        #expect(try await times(harness.alerts(query: "", token: token)) == times(created).sorted(by: >))
        await harness.simulator.setResultOrder(.shuffled)
        let first = try await ids(harness.alerts(query: "", token: token))
        let second = try await ids(harness.alerts(query: "", token: token))
        #expect(Set(first) == Set(ids(created)))
        #expect(first != second && first != ids(created), "a new order on every request")
        // $skip and $top apply after ordering.
        await harness.simulator.setResultOrder(.newestFirst)
        #expect(try await ids(harness.alerts(query: "$top=5&$skip=3", token: token)) == Array(ids(harness.alerts(query: "", token: token))[3..<8]))
    }

    @Test func alertsHaveEveryDocumentedFieldInOrder() async throws {
        let token = try await harness.accessToken()
        let alerts = try await harness.alerts(query: "$expand=evidence", token: token)
        let fixture = try SimulatorHarness.fixture("alerts-page.json")
        guard case .array(let documented)? = fixture["value"], let documentedKeys = documented.first?.keys else { Issue.record("fixture"); return }
        for alert in alerts {
            let keys = alert.keys.filter { documentedKeys.contains($0) }
            #expect(keys == documentedKeys)
        }
    }

    @Test func evidenceOnlyWithExpand() async throws {
        let token = try await harness.accessToken()
        let plain = try await harness.alerts(query: "", token: token)
        #expect(plain.allSatisfy { $0["evidence"] == .array([]) })
        let expanded = try await harness.alerts(query: "$expand=evidence", token: token)
        #expect(expanded.contains { if case .array(let items)? = $0["evidence"] { !items.isEmpty } else { false } })
    }

    @Test func authenticationAndAuthorizationFailures() async throws {
        let missing = await harness.get(token: nil)
        #expect(missing.response.status == 401)
        let fixture = try SimulatorHarness.fixture("api-error-401.json")
        let body = try JSONValue(parsing: missing.response.body)
        #expect(body.keys == fixture.keys)
        #expect(body["error"]?.keys == fixture["error"]?.keys)
        #expect(body["error"]?["code"] == .string("Unauthorized"))

        #expect(await harness.get(token: "not-a-token").response.status == 401)

        // Expired.
        let token = try await harness.accessToken()
        harness.clock.advance(seconds: 3600)
        #expect(await harness.get(token: token).response.status == 401)

        // Revoked before its expiry.
        let fresh = try await harness.accessToken()
        #expect(await harness.get(token: fresh).response.status == 200)
        await harness.simulator.revokeTokens()
        #expect(await harness.get(token: fresh).response.status == 401)

        // Wrong audience: a token for the newer API host.
        let other = await harness.secretToken(["scope": "https://api.security.microsoft.com/.default"])
        let otherToken = try #require(try JSONValue(parsing: other.body)["access_token"]?.stringValue)
        let forbidden = await harness.get(token: otherToken)
        #expect(forbidden.response.status == 403)
        #expect(try JSONValue(parsing: forbidden.response.body)["error"]?["code"] == .string("Forbidden"))

        // No Alert.Read.All role (admin consent missing).
        let noRoles = await harness.secretToken(["client_id": "22222222-2222-2222-2222-222222222222", "client_secret": "no-roles"])
        let noRolesToken = try #require(try JSONValue(parsing: noRoles.body)["access_token"]?.stringValue)
        #expect(await harness.get(token: noRolesToken).response.status == 403)
    }

    @Test func apiErrorsHaveTheDocumentedShape() async throws {
        let token = try await harness.accessToken()
        try await harness.simulator.addFault(Fault(target: .alerts, kind: .status, status: 500, count: 1))
        try await harness.simulator.addFault(Fault(target: .alerts, kind: .rateLimit, retryAfter: 3, count: 1))
        let cases: [(String, SimulatorOutcome)] = [
            ("api-error-500.json", await harness.get(token: token)),
            ("api-error-429.json", await harness.get(token: token)),
            ("api-error-400-odata.json", await harness.get(query: "$top=99999", token: token)),
            ("api-error-404.json", await harness.get("/api/nothing", token: token)),
        ]
        for (name, outcome) in cases {
            let fixture = try SimulatorHarness.fixture(name)
            let body = try JSONValue(parsing: outcome.response.body)
            #expect(body.keys == fixture.keys, "\(name)")
            #expect(body["error"]?.keys == fixture["error"]?.keys, "\(name)")
            #expect(body["error"]?["code"] == fixture["error"]?["code"], "\(name)")
        }
    }

    @Test func topAbove10000IsAnODataError() async throws {
        let token = try await harness.accessToken()
        let outcome = await harness.get(query: "$top=10001", token: token)
        #expect(outcome.response.status == 400)
        let body = try JSONValue(parsing: outcome.response.body)
        #expect(body["error"]?["code"] == .string("ODataError"))
        #expect(body["error"]?["message"]?.stringValue?.contains("10000") == true)
        #expect(await harness.get(query: "$top=10000", token: token).response.status == 200)
    }

    @Test(arguments: [
        "$filter=lastUpdateTime ge", "$filter=lastUpdateTime ge '2025-01-01T00:00:00Z'", "$filter=lastUpdateTime ge 2025-13-01T00:00:00Z",
        "$filter=lastUpdateTime ge 2025-01-01T00:00:00.12345678Z", "$filter=severity eq High", "$filter=color eq 'red'",
        "$filter=(status eq 'New'", "$filter=status eq 'New' and", "$filter=status equals 'New'", "$filter=incidentId eq 'x'",
        "$top=-1", "$top=ten", "$skip=-5", "$expand=machine", "$orderby=lastUpdateTime", "$filter=status eq 'New",
    ])
    func malformedQueriesAreODataErrors(query: String) async throws {
        let token = try await harness.accessToken()
        let encoded = query.replacingOccurrences(of: " ", with: "%20").replacingOccurrences(of: "'", with: "%27")
        let outcome = await harness.get(query: encoded, token: token)
        #expect(outcome.response.status == 400, "\(query)")
        let body = try JSONValue(parsing: outcome.response.body)
        #expect(body["error"]?["code"] == .string("ODataError"))
        #expect((body["error"]?["message"]?.stringValue ?? "").count > 10)
    }

    @Test func skipAndTopPage() async throws {
        let token = try await harness.accessToken()
        let all = try await harness.alerts(query: "", token: token)
        #expect(all.count == 30)
        var paged: [JSONValue] = []
        for skip in stride(from: 0, to: 30, by: 7) {
            paged += try await harness.alerts(query: "$top=7&$skip=\(skip)", token: token)
        }
        #expect(paged.map { $0["id"] } == all.map { $0["id"] })
    }

    @Test func plusMeansSpaceInQueries() async throws {
        let token = try await harness.accessToken()
        let alerts = try await harness.alerts(query: "$filter=lastUpdateTime+ge+2000-01-01T00:00:00Z", token: token)
        #expect(alerts.count == 30)
    }
}
