import DefenderSimulator
import Foundation
import OrderedJSON
import Synchronization
import TestSupport
import Testing
import Timekeeping

@testable import DefenderAPI

/// The alerts client reading Microsoft Graph `security/alerts_v2` from the simulator: windows
/// on `lastUpdateDateTime`, pages by `@odata.nextLink` used exactly as given, Graph's headers,
/// errors and limits.
@Suite("Graph alerts client against the simulator")
struct GraphAlertsClientTests {
    func harness(_ order: ResultOrder? = nil) throws -> APIHarness {
        try APIHarness { configuration in
            if let order { configuration.graphResultOrder = order }
            configuration.graphRateLimitPerMinute = 1_000_000
        }
    }

    func client(
        _ harness: APIHarness, base: String, transport: any HTTPTransport, tokenTransport: any HTTPTransport,
        pageSize: Int
    ) -> AlertsClient {
        harness.alertsClient(
            base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: tokenTransport, api: .graph),
            settings: .init(pageSize: pageSize), budget: RateBudget(perMinute: 1_000_000, perHour: 1_000_000, clock: harness.clock.clock),
            api: .graph)
    }

    /// 2,500 alerts over a day.
    func backlog(_ harness: APIHarness) async throws -> [String] {
        var objects: [JSONValue] = []
        var generator = AlertGenerator(seed: 11, tenantID: APIHarness.tenant)
        for index in 0..<2500 {
            objects.append(generator.makeAlert(lastUpdateTime: APIHarness.start.adding(seconds: -86_400 + Double(index) * 34)))
        }
        return try await harness.simulator.addAlerts(objects)
    }

    @Test(arguments: [ResultOrder.newestFirst, .oldestFirst, .shuffled])
    func aBackfillIsReadCompletelyOverNextLinkPages(order: ResultOrder) async throws {
        let harness = try harness(order)
        let expected = try await backlog(harness)
        let recorder = RecordingTransport()
        let result = Mutex<(alerts: [Alert], base: String)>(([], ""))
        try await harness.live { base, transport in
            recorder.base = transport
            let alerts = try await readAll(
                client(harness, base: base, transport: recorder, tokenTransport: transport, pageSize: 100),
                from: APIHarness.start.adding(seconds: -86_401))
            result.withLock { $0 = (alerts, base) }
        }
        let (alerts, base) = result.withLock { $0 }
        #expect(Set(alerts.map(\.id)) == Set(expected), "\(Set(expected).subtracting(alerts.map(\.id)).count) alerts missed")
        #expect(alerts.allSatisfy { $0.api == .graph && $0.json.contains(##""@odata.type":"#microsoft.graph.security.alert""##) })
        let requests = recorder.requests
        // Windows sized to a page and chains followed: a few requests per page of 100.
        #expect(requests.count <= 2 * 25 + 20, "\(requests.count) requests for 25 pages")
        // Every request names Graph's field, asks for the count and for new enum values, and
        // never for $expand; every link followed is one the API gave, on the API's host.
        for request in requests {
            #expect(request.url.hasPrefix(base + "/v1.0/security/alerts_v2?"))
            #expect(request.headers.contains { $0.0 == "Prefer" && $0.1 == "include-unknown-enum-members" })
            #expect(!request.url.contains("$expand"))
        }
        #expect(
            requests.filter { !$0.url.contains("$skiptoken") }.allSatisfy { $0.url.contains("lastUpdateDateTime") && $0.url.contains("$count=true") })
    }

    @Test func aChainIsFollowedWithTheLinksAsGiven() async throws {
        // 250 alerts on one instant, pages of 100: no window can split them, so the three
        // pages come from the chain of @odata.nextLink, each followed exactly as written.
        let harness = try harness()
        let expected = try await harness.simulator.generateAlerts(count: 250, lastUpdateTime: APIHarness.start.adding(seconds: -60))
        let recorder = RecordingTransport()
        let result = Mutex<[Alert]>([])
        try await harness.live { base, transport in
            recorder.base = transport
            let alerts = try await readAll(
                client(harness, base: base, transport: recorder, tokenTransport: transport, pageSize: 100),
                from: APIHarness.start.adding(seconds: -120))
            result.withLock { $0 = alerts }
        }
        #expect(Set(result.withLock { $0 }.map(\.id)) == Set(expected))
        let links = recorder.responses.compactMap { try? JSONValue(parsing: $0.body)["@odata.nextLink"]?.stringValue }
        #expect(links.count == 2)
        #expect(links.allSatisfy { link in recorder.requests.contains { $0.url == link } }, "a link was rebuilt instead of followed")
    }

    /// Incidents are read as alerts are, from `security/incidents` with their alerts, in pages
    /// of at most 50, windows on their `lastUpdateDateTime`.
    @Test func incidentsAreReadWithTheirAlertsInPagesOfFifty() async throws {
        let harness = try harness()
        let alertIDs = try await backlog(harness)
        let expected = Set(
            try await harness.simulator.allAlerts().compactMap {
                $0["incidentId"].flatMap { value -> String? in
                    if case .number(let text) = value { return text }
                    return value.stringValue
                }
            })
        let recorder = RecordingTransport()
        let result = Mutex<(incidents: [Alert], base: String)>(([], ""))
        try await harness.live { base, transport in
            recorder.base = transport
            var client = harness.alertsClient(
                base: base, transport: recorder,
                tokens: harness.tokenProvider(base: base, transport: transport, api: .graph),
                settings: .init(pageSize: 50), budget: RateBudget(perMinute: 1_000_000, perHour: 1_000_000, clock: harness.clock.clock),
                api: .graph)
            client = client.with(kind: .incident)
            let incidents = try await readAll(client, from: APIHarness.start.adding(seconds: -86_401))
            result.withLock { $0 = (incidents, base) }
        }
        let (incidents, base) = result.withLock { $0 }
        #expect(Set(incidents.map(\.id)) == expected && incidents.count == expected.count)
        #expect(expected.count < alertIDs.count, "alerts grouped into fewer incidents")
        #expect(incidents.allSatisfy { $0.kind == .incident && $0.title?.isEmpty == false })
        var carried = Set<String>()
        for incident in incidents {
            guard case .array(let alerts)? = try JSONValue(parsing: incident.json)["alerts"] else { Issue.record("no alerts"); continue }
            carried.formUnion(alerts.compactMap { $0["id"]?.stringValue })
        }
        #expect(carried == Set(alertIDs), "every alert in the incidents read")
        for request in recorder.requests {
            #expect(request.url.hasPrefix(base + "/v1.0/security/incidents?"))
            if !request.url.contains("$skiptoken") {
                #expect(request.url.contains("$expand=alerts") && request.url.contains("$top=50") && request.url.contains("lastUpdateDateTime"))
            }
        }
    }

    @Test func moreThanTenPagesOnOneInstantAreReadToTheEnd() async throws {
        // 1,250 alerts on one 100 ns instant, pages of 100: a window cannot be cut smaller than
        // an instant, so its chain of 13 pages is followed whole (a window longer than an
        // instant with as many is cut instead).
        let harness = try harness()
        let expected = try await harness.simulator.generateAlerts(count: 1250, lastUpdateTime: APIHarness.start.adding(seconds: -60))
        let result = Mutex<[Alert]>([])
        try await harness.live { base, transport in
            let alerts = try await readAll(
                client(harness, base: base, transport: transport, tokenTransport: transport, pageSize: 100),
                from: APIHarness.start.adding(seconds: -120))
            result.withLock { $0 = alerts }
        }
        #expect(Set(result.withLock { $0 }.map(\.id)) == Set(expected))
    }

    @Test func anAlertThatChangesWhileAChainIsReadCannotHideAnother() async throws {
        // Links page by offset, newest first. An alert of the first page that changes after it
        // was read leaves the (closed) window: every alert behind it moves up one place, and
        // the one at the page boundary would never be read. The chain's @odata.count shows
        // one alert missing, and the window is read again in halves.
        let harness = try harness(.newestFirst)
        var expected: [String] = []
        for index in 0..<30 {
            expected += try await harness.simulator.generateAlerts(
                count: 1, lastUpdateTime: APIHarness.start.adding(seconds: -3000 + Double(index) * 60))
        }
        let recorder = RecordingTransport()
        let simulator = harness.simulator
        recorder.afterResponse = { number, response in
            guard number == 2, let page = try? JSONValue(parsing: response.body), case .array(let items)? = page["value"],
                let first = items.first?["id"]?.stringValue
            else { return }
            // The token request is the first; the first page the second.
            _ = try? await simulator.updateAlert(id: first, at: APIHarness.start.adding(seconds: 30))
        }
        let result = Mutex<[Alert]>([])
        try await harness.live { base, transport in
            recorder.base = transport
            let client = client(harness, base: base, transport: recorder, tokenTransport: recorder, pageSize: 10)
            var alerts: [Alert] = []
            try await client.fetch(from: .inclusive(APIHarness.start.adding(seconds: -3600)), to: APIHarness.start, now: { APIHarness.start.date }) {
                alerts += $0.alerts
            }
            result.withLock { $0 = alerts }
        }
        let read = Set(result.withLock { $0 }.map(\.id))
        #expect(read == Set(expected), "missed: \(Set(expected).subtracting(read))")
        #expect(harness.records.fullText.contains("fewer alerts than its @odata.count"))
    }

    @Test func aLongWaitForTheCallBudgetIsSaid() async throws {
        // Two calls an hour: the third waits most of an hour (on the test's clock), and says so
        // first, naming the limit, instead of polling going quiet.
        let harness = try harness()
        try await harness.live { base, transport in
            let client = harness.alertsClient(
                base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport, api: .graph),
                budget: RateBudget(perMinute: 100, perHour: 2, clock: harness.clock.clock), api: .graph)
            for _ in 0..<3 { _ = try await client.probe() }
        }
        let said = harness.records.all.filter { $0.message == "waiting for the call budget before the next alerts request" }
        #expect(said.count == 1)
        #expect(said.first?.level == .notice)
        #expect(said.first?.metadata["limit"]?.description == "2 calls an hour (rate_limit_per_hour)")
    }

    @Test func aLinkToAnotherHostIsNotFollowed() async throws {
        let page =
            #"{"@odata.count":2,"@odata.nextLink":"https://collector.example/v1.0/security/alerts_v2?$skiptoken=x","value":[{"id":"a","lastUpdateDateTime":"2025-03-14T09:59:00Z"}]}"#
        let transport = StubTransport { request in
            if request.url.contains("/oauth2/") {
                return HTTPExchangeResponse(
                    status: 200, headers: [("Content-Type", "application/json")],
                    body: Data(#"{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ0eXAiOiJKV1QifQ.e30.c2ln"}"#.utf8))
            }
            return HTTPExchangeResponse(status: 200, headers: [("Content-Type", "application/json")], body: Data(page.utf8))
        }
        let harness = try harness()
        let client = client(harness, base: "http://127.0.0.1:9", transport: transport, tokenTransport: transport, pageSize: 10)
        await #expect(throws: DefenderAPIError.self) {
            try await client.fetch(from: .inclusive(APIHarness.start.adding(seconds: -120)), now: { APIHarness.start.date }) { _ in }
        }
        #expect(!transport.urls.contains { $0.contains("collector.example") }, "the access token went to another host")
    }

    @Test func graphErrorsAreReadWithTheirRequestID() async throws {
        let harness = try APIHarness { configuration in
            configuration.apps = [
                RegisteredApp(tenantID: APIHarness.tenant, clientID: APIHarness.client, secrets: [APIHarness.canary], graphRoles: [])
            ]
        }
        try await harness.live { base, transport in
            let client = client(harness, base: base, transport: transport, tokenTransport: transport, pageSize: 10)
            do {
                _ = try await client.probe()
                Issue.record("a token without SecurityAlert.Read.All was accepted")
            } catch {
                guard case DefenderAPIError.api(403, let code, let message, let requestID) = error else {
                    Issue.record("\(error)")
                    return
                }
                #expect(code == "Forbidden")
                #expect(message?.contains("SecurityAlert.Read.All") == true)
                #expect(requestID?.count == 36)
            }
        }
    }

    @Test func aTokenForTheMDEAPIIsRefusedByGraphAndTheReverse() async throws {
        let harness = try harness()
        try await harness.live { base, transport in
            // A client for Graph holding a token minted for the MDE API, and the reverse.
            let graph = harness.alertsClient(
                base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport, api: .mde),
                api: .graph)
            let mde = harness.alertsClient(
                base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport, api: .graph))
            for client in [graph, mde] {
                do {
                    _ = try await client.probe()
                    Issue.record("a token for the other API was accepted")
                } catch {
                    guard case DefenderAPIError.api(401, _, _, _) = error else {
                        Issue.record("\(error)")
                        continue
                    }
                }
            }
        }
    }
}

/// A transport that records requests and answers, passing them to `base`; `afterResponse`
/// runs after each answer (numbered from 1) before it is returned.
final class RecordingTransport: HTTPTransport, @unchecked Sendable {
    // @unchecked: `base` and `afterResponse` are set before the first request.
    var base: (any HTTPTransport)?
    var afterResponse: (@Sendable (Int, HTTPExchangeResponse) async -> Void)?
    private let log = Mutex<(requests: [HTTPExchangeRequest], responses: [HTTPExchangeResponse])>(([], []))

    func send(_ request: HTTPExchangeRequest, deadline: Duration) async throws(TransportError) -> HTTPExchangeResponse {
        log.withLock { $0.requests.append(request) }
        let response = try await base!.send(request, deadline: deadline)
        let number = log.withLock { log in
            log.responses.append(response)
            return log.responses.count
        }
        await afterResponse?(number, response)
        return response
    }

    /// The alerts requests (not the token's).
    var requests: [HTTPExchangeRequest] { log.withLock { $0.requests }.filter { !$0.url.contains("/oauth2/") } }
    var responses: [HTTPExchangeResponse] { log.withLock { $0.responses } }
}

/// A transport answering from a closure, recording the URLs asked for.
final class StubTransport: HTTPTransport {
    private let answer: @Sendable (HTTPExchangeRequest) -> HTTPExchangeResponse
    private let asked = Mutex<[String]>([])

    init(_ answer: @escaping @Sendable (HTTPExchangeRequest) -> HTTPExchangeResponse) { self.answer = answer }

    func send(_ request: HTTPExchangeRequest, deadline: Duration) async throws(TransportError) -> HTTPExchangeResponse {
        asked.withLock { $0.append(request.url) }
        return answer(request)
    }

    var urls: [String] { asked.withLock { $0 } }
}
