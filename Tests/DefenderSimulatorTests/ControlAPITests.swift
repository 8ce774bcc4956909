import DefenderSimulator
import Foundation
import OrderedJSON
import Testing

@Suite("Control API")
struct ControlAPITests {
    let harness: SimulatorHarness

    init() throws {
        harness = try SimulatorHarness()
    }

    func control(_ method: String, _ path: String, _ body: String = "") async throws -> (Int, JSONValue) {
        let response = await harness.simulator.handle(
            SimulatorRequest(
                method: method, path: "/_simulator/\(path)", body: Data(body.utf8), baseURL: SimulatorHarness.base)
        ).response
        return (response.status, try JSONValue(parsing: response.body))
    }

    @Test func addUpdateAndCount() async throws {
        let (status, created) = try await control("POST", "alerts", #"{"count": 25, "lastUpdateTime": "2025-03-14T09:59:00.5Z"}"#)
        #expect(status == 201)
        guard case .array(let ids)? = created["ids"] else { Issue.record("ids"); return }
        #expect(ids.count == 25)

        let id = try #require(ids.first?.stringValue)
        let (updateStatus, updated) = try await control(
            "POST", "alerts/\(id)", #"{"changes": {"status": "Resolved"}, "lastUpdateTime": "2025-03-14T10:00:00Z"}"#)
        #expect(updateStatus == 200)
        #expect(updated["status"] == .string("Resolved"))
        #expect(updated["lastUpdateTime"] == .string("2025-03-14T10:00:00Z"))

        let token = try await harness.accessToken()
        let filtered = try await harness.alerts(query: SimulatorHarness.filter("lastUpdateTime ge 2025-03-14T10:00:00Z"), token: token)
        #expect(filtered.map { $0["id"] } == [.string(id)])

        let (_, counters) = try await control("GET", "counters")
        #expect(counters["tokensIssued"] == .int(1))
        #expect(counters["requests"]?["alerts"]?["200"] == .int(1))
        #expect(try await control("GET", "alerts/count").1["count"] == .int(25))
    }

    @Test func fullAlertObjectsAreStoredAsGiven() async throws {
        let alert = #"{"id":"da1_1","lastUpdateTime":"2025-03-14T09:00:00Z","score":1.50,"nested":{"b":null,"a":[1e3]},"evidence":[]}"#
        let (status, _) = try await control("POST", "alerts", #"{"alerts": [\#(alert)]}"#)
        #expect(status == 201)
        let token = try await harness.accessToken()
        let outcome = await harness.get(query: "", token: token)
        #expect(String(decoding: outcome.response.body, as: UTF8.self).contains(alert))
    }

    @Test func lateVisibilityThroughTheControlAPI() async throws {
        _ = try await control("POST", "alerts", #"{"count": 1, "lastUpdateTime": "2025-03-14T09:59:00Z", "visibleAfterSeconds": 300}"#)
        let token = try await harness.accessToken()
        #expect(try await harness.alerts(query: "", token: token).isEmpty)
        _ = try await control("POST", "clock/advance", #"{"seconds": 301}"#)
        #expect(try await harness.alerts(query: "", token: token).count == 1)
    }

    @Test func faultsScenariosAppsAndRevocation() async throws {
        #expect(try await control("POST", "faults", #"{"target": "alerts", "kind": "status", "status": 502, "count": 1}"#).0 == 201)
        let token = try await harness.accessToken()
        #expect(await harness.get(token: token).response.status == 502)
        #expect(try await control("POST", "faults", #"{"target": "alerts", "kind": "status", "status": 502}"#).0 == 201)
        #expect(try await control("DELETE", "faults").0 == 200)
        #expect(await harness.get(token: token).response.status == 200)

        #expect(try await control("POST", "tokens/revoke").0 == 200)
        #expect(await harness.get(token: token).response.status == 401)

        #expect(try await control("POST", "scenario", #"{"ratePerMinute": 60, "backlog": 3}"#).0 == 200)
        #expect(await harness.simulator.allAlerts().count == 3)

        #expect(
            try await control(
                "POST", "apps", #"{"tenantId": "\#(SimulatorHarness.tenant)", "clientId": "33333333-3333-3333-3333-333333333333", "secret": "s3"}"#
            ).0 == 201)
        #expect(await harness.secretToken(["client_id": "33333333-3333-3333-3333-333333333333", "client_secret": "s3"]).status == 200)
    }

    @Test func badControlRequestsSayWhy() async throws {
        let (status, body) = try await control("POST", "faults", #"{"target": "alerts", "kind": "explode"}"#)
        #expect(status == 400)
        #expect(body["error"]?.stringValue?.isEmpty == false)
        #expect(try await control("POST", "alerts/nope", "{}").0 == 400)
        #expect(try await control("GET", "nothing").0 == 404)
        let malformed = await harness.simulator.handle(
            SimulatorRequest(method: "POST", path: "/_simulator/alerts", body: Data("{".utf8), baseURL: SimulatorHarness.base))
        #expect(malformed.response.status == 400)
    }
}

@Suite("OrderedJSON")
struct OrderedJSONTests {
    @Test func roundTripKeepsOrderNumbersAndEscapes() throws {
        let text = #"{"z":1,"a":[1.50,-0,2e-3,1E+2],"m":null,"s":"line\nbreak \"q\" \\ \u0001 ü ✓ 😀","t":true,"f":false,"o":{}}"#
        let value = try JSONValue(parsing: text)
        #expect(value.keys == ["z", "a", "m", "s", "t", "f", "o"])
        #expect(value["a"] == .array([.number("1.50"), .number("-0"), .number("2e-3"), .number("1E+2")]))
        #expect(try JSONValue(parsing: value.serialized) == value)
        #expect(value.serialized.contains("1.50"))
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\":1,}", "01", "1.", "\"\\x\"", "nul", "{\"a\" 1}", "[1] [2]", "\"\u{01}\""])
    func malformedInputIsAnError(text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: text) }
    }

    @Test func aLoneSurrogateEscapeIsLegalJSON() throws {
        // RFC 8259's grammar allows it; it is no Unicode scalar, so it decodes as U+FFFD.
        #expect(try JSONValue(parsing: #""\ud800""#) == .string("\u{FFFD}"))
        #expect(try JSONValue(parsing: #""a\udc00b""#) == .string("a\u{FFFD}b"))
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: deep) }
    }

    @Test func surrogatePairsDecode() throws {
        #expect(try JSONValue(parsing: #""\ud83d\ude00""#) == .string("😀"))
    }
}
