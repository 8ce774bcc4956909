import DefenderSimulator
import Foundation
import Synchronization
import TestSupport
import Testing
import Timekeeping

@testable import DefenderAPI

/// Answers that would have the client send the same request for ever (issue 23, item 14): a
/// Graph `@odata.nextLink` that points at itself, and pages with more alerts than `$top`.
/// The time limit ends a loop that never would; each test takes a fraction of a second alone,
/// but under a loaded `make test` one waited 94 s for the cooperative pool (a minute was too
/// short a limit to tell a loop from a wait). The requests counted say whether it looped.
@Suite("Answers that never end", .timeLimit(.minutes(5)))
struct UnendingAnswersTests {
    func client(_ harness: APIHarness, _ transport: InProcessSimulator, api: AlertsAPI, pageSize: Int) -> AlertsClient {
        harness.alertsClient(
            base: InProcessSimulator.base, transport: transport,
            tokens: harness.tokenProvider(base: InProcessSimulator.base, transport: transport, api: api),
            settings: .init(pageSize: pageSize),
            budget: RateBudget(perMinute: 1_000_000, perHour: 1_000_000, clock: harness.clock.clock), api: api)
    }

    @Test func aNextLinkThatPointsAtItselfIsNotFollowedAgain() async throws {
        // Before: the chain was followed 10 pages deep, the window halved and each half's chain
        // followed again, down to one instant, whose chain was followed for ever.
        let harness = try APIHarness {
            $0.graphRateLimitPerMinute = 1_000_000
            $0.faults = [Fault(target: .alerts, kind: .nextLinkLoop)]
        }
        try await harness.simulator.generateAlerts(count: 30, lastUpdateTime: APIHarness.start.adding(seconds: -600))
        let transport = InProcessSimulator(harness.simulator)
        do {
            _ = try await readAll(client(harness, transport, api: .graph, pageSize: 10), from: APIHarness.start.adding(seconds: -3600))
            Issue.record("a chain that loops was read to its end")
        } catch DefenderAPIError.malformedResponse(let text) {
            #expect(text.contains("repeats a link"), "\(text)")
        }
        // The first page and its link, followed once.
        #expect(transport.alertsRequests.count == 2)
    }

    @Test func aPageWithMoreAlertsThanTopIsReadInHalvesNeverRequestedAgain() async throws {
        // Before: the answer was refused and the same request sent again (3 attempts a poll,
        // every poll): the poll failed for good.
        let harness = try APIHarness {
            $0.rateLimitPerMinute = 1_000_000
            $0.rateLimitPerHour = 1_000_000
            $0.faults = [Fault(target: .alerts, kind: .ignoreTop, count: 3)]
        }
        var ids: [String] = []
        for minute in 0..<100 {
            ids += try await harness.simulator.generateAlerts(count: 1, lastUpdateTime: APIHarness.start.adding(seconds: Double(60 * minute - 6000)))
        }
        let transport = InProcessSimulator(harness.simulator)
        let alerts = try await readAll(client(harness, transport, api: .mde, pageSize: 10), from: APIHarness.start.adding(seconds: -7200))
        #expect(Set(alerts.map(\.id)) == Set(ids))
        let requests = transport.alertsRequests
        #expect(Set(requests).count == requests.count, "a request was sent again as it was")
        #expect(await harness.simulator.counterSnapshot.faultsInjected == 3)
        #expect(requests.count <= 50, "\(requests.count) requests for 100 alerts, 10 a page")
        #expect(harness.records.fullText.contains("more alerts than $top asked for"))
    }

    @Test func anAPIThatAlwaysIgnoresTopEndsThePollInsteadOfSplittingForEver() async throws {
        // Every answer holds more than asked: after a bounded number of halvings the fetch gives up.
        let harness = try APIHarness {
            $0.rateLimitPerMinute = 1_000_000
            $0.rateLimitPerHour = 1_000_000
            $0.faults = [Fault(target: .alerts, kind: .ignoreTop)]
        }
        try await harness.simulator.generateAlerts(count: 50, lastUpdateTime: APIHarness.start.adding(seconds: -600))
        let transport = InProcessSimulator(harness.simulator)
        do {
            _ = try await readAll(client(harness, transport, api: .mde, pageSize: 10), from: APIHarness.start.adding(seconds: -7200))
            Issue.record("more alerts than a page at one instant were read although the API ignores $top")
        } catch DefenderAPIError.malformedResponse(let text) {
            #expect(AlertsClient.isOverfull(.malformedResponse(text)), "\(text)")
        }
        // Each halving costs the overfull answer and the empty other half (or a window sent ahead).
        #expect(transport.alertsRequests.count <= 3 * (AlertsClient.mostOverfullAnswers + 1))
    }
}

/// The simulator called in process: each request goes straight to
/// ``SimulatedDefender/handle(_:)`` (no HTTP, no compression); the alerts requests are kept.
final class InProcessSimulator: HTTPTransport {
    static let base = "http://sim.test"
    let simulator: SimulatedDefender
    private let sent = Mutex<[String]>([])

    init(_ simulator: SimulatedDefender) { self.simulator = simulator }

    /// The URLs of the alerts requests (MDE and Graph), in the order sent.
    var alertsRequests: [String] { sent.withLock { $0 } }

    func send(_ request: HTTPExchangeRequest, deadline: Duration) async throws(TransportError) -> HTTPExchangeResponse {
        guard let components = URLComponents(string: request.url) else { throw .connection("not a URL: \(request.url)") }
        var headers = request.headers
        if let bearer = request.bearer { headers.append(("Authorization", bearer.withValue { "Bearer " + $0 })) }
        if let authorization = request.authorization { headers.append(("Authorization", authorization.withValue { $0 })) }
        let body = request.body.map { secret in secret.withValue { Data($0.utf8) } } ?? Data(request.bytes ?? [])
        if components.path.hasSuffix("/alerts") || components.path.hasSuffix("/alerts_v2") { sent.withLock { $0.append(request.url) } }
        let outcome = await simulator.handle(
            SimulatorRequest(
                method: request.method, path: components.path, query: components.percentEncodedQuery ?? "",
                headers: headers, body: body, baseURL: Self.base))
        return HTTPExchangeResponse(status: outcome.response.status, headers: outcome.response.headers, body: outcome.response.body)
    }
}
