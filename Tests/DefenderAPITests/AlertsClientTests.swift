import DefenderSimulator
import Foundation
import OrderedJSON
import TestSupport
import Testing
import Timekeeping

@testable import DefenderAPI

@Suite("Alerts client against the simulator")
struct AlertsClientTests {
    /// `count` alerts spread evenly over the hour before the harness's start; their ids.
    func spreadOverTheLastHour(_ count: Int, in harness: APIHarness) async throws -> [String] {
        var ids: [String] = []
        for index in 0..<count {
            ids += try await harness.simulator.generateAlerts(
                count: 1, lastUpdateTime: APIHarness.start.adding(seconds: -3600 + Double(index) * 3600 / Double(count)))
        }
        return ids
    }

    /// A client reading 100 alerts a page without evidence, its requests going through `counted`
    /// (the token's through `transport`).
    func smallPages(_ harness: APIHarness, base: String, transport: any HTTPTransport, counted: any HTTPTransport) -> AlertsClient {
        harness.alertsClient(
            base: base, transport: counted, tokens: harness.tokenProvider(base: base, transport: transport),
            settings: .init(pageSize: 100, expandEvidence: false))
    }

    /// The error that reading fails with.
    func firstError(_ client: AlertsClient) async throws -> DefenderAPIError {
        do {
            _ = try await readAll(client, from: APIHarness.start)
        } catch let error as DefenderAPIError {
            return error
        }
        throw SimulatorSetupError("reading did not fail")
    }

    @Test func aUniformBacklogCostsAboutOneRequestPerPage() async throws {
        // 3,000 alerts, one every 1.2 s over the last hour, read 100 at a time: 30 pages.
        let harness = try APIHarness()
        let expected = try await spreadOverTheLastHour(3000, in: harness)
        try await harness.live { base, transport in
            let counting = CountingTransport(transport)
            let client = smallPages(harness, base: base, transport: transport, counted: counting)
            let alerts = try await readAll(client, from: APIHarness.start.adding(seconds: -3601))
            #expect(alerts.count == expected.count)
            #expect(Set(alerts.map(\.id)) == Set(expected))
            // At most 1.3 requests per page, plus a token request and, per poll, the first full page
            // and its split.
            #expect(counting.count <= 39 + 3, "\(counting.count) requests for 30 pages")
        }
    }

    @Test func theNextWindowIsRequestedWhileAPageIsHandedOn() async throws {
        // 1,000 alerts over the last hour, 100 a page: the first page comes back full and is
        // split, and from then on each window fits. Once the density is known, the request for
        // the next window is sent before a batch is handed on: the handler of batch k waits for
        // request k + 2 (the full page, k pages read, one ahead), which without a request sent
        // ahead would never come.
        let harness = try APIHarness()
        let expected = try await spreadOverTheLastHour(1000, in: harness)
        try await harness.live { base, transport in
            let watched = WatchedTransport(transport)
            let client = smallPages(harness, base: base, transport: transport, counted: watched)
            var batches = 0
            var alerts: [Alert] = []
            var previous: Timestamp?
            try await client.fetch(from: .inclusive(APIHarness.start.adding(seconds: -3601)), now: { APIHarness.start.date }) { batch in
                batches += 1
                if (2...6).contains(batches) {
                    let sent = await watched.waitForRequests(batches + 2)
                    #expect(sent, "batch \(batches) was handed on before the next window was requested")
                }
                // Still in time order.
                if let previous, let first = batch.alerts.map(\.lastUpdateTime).min() { #expect(first >= previous) }
                previous = batch.alerts.map(\.lastUpdateTime).max() ?? previous
                alerts += batch.alerts
            }
            #expect(alerts.count == expected.count)
            #expect(Set(alerts.map(\.id)) == Set(expected))
        }
    }

    @Test func aQuietStretchBeforeABacklogCostsNothingExtra() async throws {
        // Reading 3 hours of which only the last holds alerts (600, 100 a page): the empty two
        // hours are neither carved into windows nor dilute the density.
        let harness = try APIHarness()
        let expected = try await spreadOverTheLastHour(600, in: harness)
        try await harness.live { base, transport in
            let counting = CountingTransport(transport)
            let client = smallPages(harness, base: base, transport: transport, counted: counting)
            let alerts = try await readAll(client, from: APIHarness.start.adding(seconds: -3 * 3600))
            #expect(Set(alerts.map(\.id)) == Set(expected))
            // 6 pages: the first full page, its split, about one request a page after that, and
            // the bisection of the empty two hours (a split is never past the middle of the
            // window: results newest first would otherwise make no progress), one request each.
            #expect(counting.count <= 13, "\(counting.count) requests for 6 pages")
        }
    }

    @Test func windowsAreSizedToHoldLessThanAPage() {
        #expect(AlertsClient.windowTarget(pageSize: 1000) == 900)
        #expect(AlertsClient.windowTarget(pageSize: 10000) == 9000)
        #expect(AlertsClient.windowTarget(pageSize: 100) == 80)
        #expect(AlertsClient.windowTarget(pageSize: 25) == 15)
        #expect(AlertsClient.windowTarget(pageSize: 1) == 1)
    }

    @Test func fullPagesAreSplitUntilEveryAlertIsRead() async throws {
        // Thousands of alerts on a handful of timestamps, read 100 at a time (more than the rate
        // limit allows in a minute: those alerts are told apart by alertCreationTime).
        let harness = try APIHarness { $0.rateLimitPerMinute = 1_000_000 }
        var generated: [String] = []
        for (index, count) in [700, 1, 1300, 250, 999, 650].enumerated() {
            let time = APIHarness.start.adding(seconds: Double(index * 10 - 100))
            generated += try await harness.simulator.generateAlerts(count: count, lastUpdateTime: time)
        }
        let ids = generated
        try await harness.live { base, transport in
            let counting = CountingTransport(transport)
            let client = harness.alertsClient(
                base: base, transport: counting, tokens: harness.tokenProvider(base: base, transport: transport),
                settings: .init(pageSize: 100, expandEvidence: false),
                budget: RateBudget(perMinute: 1_000_000, perHour: 1_000_000, clock: harness.clock.clock))
            let alerts = try await readAll(client, from: APIHarness.start.adding(seconds: -3600))
            #expect(alerts.count == ids.count)
            // 39 pages; the alerts of an instant are told apart by bisecting their creation times
            // (about twice what $skip paging cost, and correct whatever the order of results).
            #expect(counting.count <= 140, "\(counting.count) requests for 39 pages")
            #expect(Set(alerts.map(\.id)) == Set(ids))
        }
    }

    @Test func twentyFiveAlertsOnOneTimestampWithPagesOfTen() async throws {
        let harness = try APIHarness()
        let ids = try await harness.simulator.generateAlerts(count: 25, lastUpdateTime: APIHarness.start)
        try await harness.live { base, transport in
            let client = harness.alertsClient(
                base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport),
                settings: .init(pageSize: 10))
            let alerts = try await readAll(client, from: APIHarness.start.adding(seconds: -60))
            #expect(alerts.map(\.id).sorted() == ids.sorted())
        }
    }

    @Test func alertsPassThroughLosslessly() async throws {
        let harness = try APIHarness()
        let fixture = try JSONValue(
            parsing: Data(contentsOf: URL(fileURLWithPath: repositoryRootPath + "/Tests/Fixtures/alert-single-observed-shape.json")))
        var original = fixture
        original.set("lastUpdateTime", .string("2025-03-14T09:31:04.3Z"))
        original.set(
            "futureField", .object([("score", .number("1.50")), ("big", .number("12345678901234567890")), ("exp", .number("1E+2")), ("n", .null)]))
        original.set("text", .string("multi\nline \"quoted\" \\ ünïcødé ✓ 😀 \u{0001}"))
        try await harness.simulator.addAlerts([original])
        let expected = original
        try await harness.live { base, transport in
            let client = harness.alertsClient(base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport))
            let alerts = try await readAll(client, from: APIHarness.start.adding(seconds: -3600))
            let alert = try #require(alerts.first)
            #expect(try JSONValue(parsing: alert.json) == expected)
            #expect(alert.json == expected.serialized)
            #expect(alert.id == "ar638775414627712347_-402215871")
            #expect(alert.severity == "Low")
            #expect(alert.incidentId == "48219")
            #expect(alert.computerDnsName == "ws-hr-0031")
        }
    }

    @Test func filtersAreSentAsOData() async throws {
        let harness = try APIHarness()
        _ = try await harness.simulator.generateAlerts(count: 30, lastUpdateTime: APIHarness.start, severity: "High")
        _ = try await harness.simulator.generateAlerts(count: 20, lastUpdateTime: APIHarness.start, severity: "Low")
        try await harness.live { base, transport in
            var settings = AlertsClient.Settings(pageSize: 1000)
            settings.severities = ["High", "Medium"]
            settings.statuses = ["New"]
            let client = harness.alertsClient(
                base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport), settings: settings)
            let alerts = try await readAll(client, from: APIHarness.start)
            #expect(alerts.count == 30)
            #expect(alerts.allSatisfy { $0.severity == "High" })
        }
    }

    @Test func a401RenewsTheTokenExactlyOnce() async throws {
        let harness = try APIHarness()
        _ = try await harness.simulator.generateAlerts(count: 3, lastUpdateTime: APIHarness.start)
        try await harness.live { base, transport in
            let tokens = harness.tokenProvider(base: base, transport: transport)
            let client = harness.alertsClient(base: base, transport: transport, tokens: tokens)
            #expect(try await client.probe() == 1)
            await harness.simulator.revokeTokens()
            let alerts = try await readAll(client, from: APIHarness.start)
            #expect(alerts.count == 3)
            let counters = await harness.simulator.counterSnapshot
            #expect(counters.tokensIssued == 2)
            #expect(counters.count("alerts", status: 401) == 1)

            // A token the API keeps refusing with 401: one renewal, then the 401 is the error,
            // with its fix (issue 11, hole 9: this used to exercise a 403 instead).
            try await harness.simulator.addFault(Fault(target: .alerts, kind: .status, status: 401, count: 2))
            let before = await harness.simulator.counterSnapshot
            await #expect {
                try await client.probe()
            } throws: { error in
                guard case .api(401, _, _, _)? = error as? DefenderAPIError else { return false }
                return "\(error)".contains("the token was refused")
            }
            let after = await harness.simulator.counterSnapshot
            #expect(after.tokensIssued == before.tokensIssued + 1, "exactly one renewal")
            #expect(after.count("alerts", status: 401) == before.count("alerts", status: 401) + 2)

            // A token without the permission: 403, no renewal.
            try await harness.simulator.register(
                RegisteredApp(tenantID: APIHarness.tenant, clientID: APIHarness.client, secrets: [APIHarness.canary], roles: []))
            harness.clock.advance(by: .seconds(3600))
            await #expect {
                try await client.probe()
            } throws: { error in
                guard case .api(403, _, _, _)? = error as? DefenderAPIError else { return false }
                return true
            }
        }
    }

    @Test func errorsAreTyped() async throws {
        let harness = try APIHarness {
            $0.apps.append(RegisteredApp(tenantID: APIHarness.tenant, clientID: "22222222-2222-2222-2222-222222222222", secrets: ["x"], roles: []))
        }
        try await harness.live { base, transport in
            var settings = AlertsClient.Settings()
            settings.attempts = 1
            let client = harness.alertsClient(
                base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport), settings: settings)
            @Sendable func failure(_ fault: Fault) async throws -> DefenderAPIError {
                try await harness.simulator.addFault(fault)
                return try await firstError(client)
            }
            guard case .malformedResponse(let invalid) = try await failure(Fault(target: .alerts, kind: .invalidJSON, count: 1)) else {
                Issue.record("invalid JSON"); return
            }
            #expect(invalid.contains("invalid JSON"))
            guard case .malformedResponse(let html) = try await failure(Fault(target: .alerts, kind: .wrongContentType, count: 1)) else {
                Issue.record("content type"); return
            }
            #expect(html.contains("text/html"))
            guard case .transport = try await failure(Fault(target: .alerts, kind: .truncated, count: 1)) else { Issue.record("truncated"); return }
            guard case .api(503, let code, _, let correlation) = try await failure(Fault(target: .alerts, kind: .status, status: 503, count: 1))
            else { Issue.record("503"); return }
            #expect(code == "InternalServerError")
            #expect(correlation?.count == 36)
            guard case .rateLimited(let wait) = try await failure(Fault(target: .alerts, kind: .rateLimit, retryAfter: 9, count: 1)) else {
                Issue.record("429"); return
            }
            #expect(wait == .seconds(9))

            let noRoles = harness.alertsClient(
                base: base, transport: transport,
                tokens: TokenProvider(
                    configuration: .init(
                        tenantID: APIHarness.tenant, clientID: "22222222-2222-2222-2222-222222222222", credential: .secret(Secret("x")),
                        endpoints: harness.endpoints(base)),
                    transport: transport, clock: harness.clock.clock, logger: harness.records.logger()), settings: settings)
            let forbidden = try await firstError(noRoles)
            guard case .api(403, let code, _, _) = forbidden, code == "Forbidden" else { Issue.record("\(forbidden)"); return }
            #expect(forbidden.description.contains("Alert.Read.All"))
        }
    }

    @Test func transientFailuresAreRetried() async throws {
        let harness = try APIHarness { $0.faults = [Fault(target: .alerts, kind: .status, status: 502, count: 2)] }
        _ = try await harness.simulator.generateAlerts(count: 4, lastUpdateTime: APIHarness.start)
        try await harness.live { base, transport in
            let client = harness.alertsClient(base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport))
            let alerts = try await readAll(client, from: APIHarness.start)
            #expect(alerts.count == 4)
            #expect(await harness.simulator.counterSnapshot.count("alerts", status: 502) == 2)
        }
    }

    @Test func stalledResponsesHitTheDeadline() async throws {
        let harness = try APIHarness { $0.faults = [Fault(target: .alerts, kind: .stall, count: 1)] }
        try await harness.live { base, transport in
            var settings = AlertsClient.Settings()
            settings.attempts = 1
            settings.requestDeadline = .milliseconds(500)
            let client = harness.alertsClient(
                base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport), settings: settings)
            let result = await capture { () async throws(DefenderAPIError) in try await client.probe() }
            guard case .failure(.transport(.timedOut)) = result else { Issue.record("\(result)"); return }
        }
    }
}

let repositoryRootPath: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()
