import DefenderSimulator
import Foundation
import OrderedJSON
import Testing
import Timekeeping

@Suite("Generated alerts")
struct AlertGeneratorTests {
    @Test func sameSeedSameAlerts() {
        var a = AlertGenerator(seed: 7, tenantID: SimulatorHarness.tenant)
        var b = AlertGenerator(seed: 7, tenantID: SimulatorHarness.tenant)
        var c = AlertGenerator(seed: 8, tenantID: SimulatorHarness.tenant)
        let first = (0..<20).map { _ in a.makeAlert(lastUpdateTime: SimulatorHarness.start).serialized }
        #expect(first == (0..<20).map { _ in b.makeAlert(lastUpdateTime: SimulatorHarness.start).serialized })
        #expect(first != (0..<20).map { _ in c.makeAlert(lastUpdateTime: SimulatorHarness.start).serialized })
    }

    @Test func varietyAcrossAThousandAlerts() throws {
        var generator = AlertGenerator(seed: 1, tenantID: SimulatorHarness.tenant)
        let alerts = (0..<1000).map { _ in generator.makeAlert(lastUpdateTime: generator.stamp(SimulatorHarness.start)) }
        func values(_ key: String) -> Set<String> { Set(alerts.compactMap { $0[key]?.stringValue }) }
        #expect(values("severity").count >= 4)
        #expect(values("category").count >= 8)
        #expect(values("detectionSource").count >= 4)
        var entityTypes: Set<String> = []
        var fractionDigits: Set<Int> = []
        for alert in alerts {
            if case .array(let evidence)? = alert["evidence"] { entityTypes.formUnion(evidence.compactMap { $0["entityType"]?.stringValue }) }
            let text = try #require(alert["lastUpdateTime"]?.stringValue)
            fractionDigits.insert(text.contains(".") ? text.split(separator: ".")[1].count - 1 : 0)
            let id = try #require(alert["id"]?.stringValue)
            #expect(id.wholeMatch(of: /(da|ar)\d{18}_-?\d+/) != nil, "\(id)")
        }
        #expect(entityTypes == ["User", "Process", "File", "Ip", "Url", "Registry"])
        #expect(fractionDigits.isSuperset(of: [0, 2, 7]))
        #expect(Set(alerts.map(\.serialized)).count == 1000)
        // Undocumented fields that real responses carry.
        #expect(alerts.allSatisfy { $0["loggedOnUsers"] != nil && $0["domains"] != nil })
        #expect(alerts.contains { $0["recommendedAction"] != nil })
    }
}

@Suite("Scenarios")
struct ScenarioTests {
    func harness(_ configure: @escaping (inout Scenario) -> Void) throws -> SimulatorHarness {
        try SimulatorHarness { configuration in configure(&configuration.scenario) }
    }

    @Test func steadyArrivalsFollowTheClock() async throws {
        let harness = try harness { $0.ratePerMinute = 10 }
        let token = try await harness.accessToken()
        #expect(try await harness.alerts(query: "", token: token).isEmpty)
        harness.clock.advance(seconds: 60)
        #expect(try await harness.alerts(query: "", token: token).count == 10)
        harness.clock.advance(seconds: 30)
        #expect(try await harness.alerts(query: "", token: token).count == 15)
    }

    @Test func lateAlertsAppearAfterTheirTimestamp() async throws {
        let harness = try harness {
            $0.ratePerMinute = 6; $0.lateFraction = 1; $0.lateSeconds = 120
        }
        let token = try await harness.accessToken()
        harness.clock.advance(seconds: 60)
        #expect(try await harness.alerts(query: "", token: token).isEmpty)
        #expect(await harness.simulator.allAlerts().count == 6)
        harness.clock.advance(seconds: 120)
        // At t=180s, 18 alerts exist; those stamped up to t=60s have become visible.
        let visible = try await harness.alerts(query: "", token: token)
        #expect(visible.count == 6)
        #expect(await harness.simulator.allAlerts().count == 18)
        // Their lastUpdateTime lies in the past: a poller whose cursor has moved on needs an overlap.
        let first = try #require(Timestamp(parsing: visible[0]["lastUpdateTime"]?.stringValue ?? ""))
        #expect(first < harness.clock.now().adding(seconds: -120))
    }

    @Test func updatesGiveExistingAlertsANewLastUpdateTime() async throws {
        let harness = try harness {
            $0.backlog = 5; $0.ratePerMinute = 60; $0.updateFraction = 1
        }
        let before = await harness.simulator.allAlerts()
        harness.clock.advance(seconds: 10)
        let after = await harness.simulator.allAlerts()
        #expect(after.count == 5)
        #expect(Set(after.compactMap { $0["id"]?.stringValue }) == Set(before.compactMap { $0["id"]?.stringValue }))
        #expect(after.map { $0["lastUpdateTime"] } != before.map { $0["lastUpdateTime"] })
    }

    @Test func resurfacingBringsOldAlertsBack() async throws {
        let harness = try harness {
            $0.backlog = 40; $0.backlogSpanSeconds = 90 * 86_400; $0.ratePerMinute = 60; $0.resurfaceFraction = 1
        }
        let before = await harness.simulator.allAlerts()
        harness.clock.advance(seconds: 5)
        let after = await harness.simulator.allAlerts()
        let changed = zip(before, after).filter { $0.0["lastUpdateTime"] != $0.1["lastUpdateTime"] }
        #expect(!changed.isEmpty)
        for (old, new) in changed {
            #expect(old["alertCreationTime"] == new["alertCreationTime"])
            let created = try #require(Timestamp(parsing: new["alertCreationTime"]?.stringValue ?? ""))
            #expect(created < harness.clock.now().adding(seconds: -86_400 * 60))
        }
    }

    @Test func batchesShareOneTimestamp() async throws {
        let harness = try harness {
            $0.ratePerMinute = 1; $0.batchSize = 25
        }
        harness.clock.advance(seconds: 60)
        let alerts = await harness.simulator.allAlerts()
        #expect(alerts.count == 25)
        #expect(Set(alerts.compactMap { $0["lastUpdateTime"]?.stringValue }).count == 1)
        #expect(Set(alerts.compactMap { $0["id"]?.stringValue }).count == 25)
    }

    @Test func invalidScenariosAreRefused() {
        var scenario = Scenario()
        scenario.updateFraction = 1.5
        #expect(throws: SimulatorSetupError.self) { try scenario.validate() }
    }
}

@Suite("Faults and rate limits")
struct FaultTests {
    @Test func oneShotStatusFaultThenNormal() async throws {
        let harness = try SimulatorHarness()
        let token = try await harness.accessToken()
        try await harness.simulator.addFault(Fault(target: .alerts, kind: .status, status: 503, count: 2))
        #expect(await harness.get(token: token).response.status == 503)
        let second = await harness.get(token: token)
        #expect(second.response.status == 503)
        #expect(try JSONValue(parsing: second.response.body)["error"]?["code"] == .string("InternalServerError"))
        #expect(await harness.get(token: token).response.status == 200)
        #expect(await harness.simulator.counterSnapshot.faultsInjected == 2)
    }

    @Test func tokenEndpointOutage() async throws {
        let harness = try SimulatorHarness { $0.faults = [Fault(target: .token, kind: .status, status: 503)] }
        let response = await harness.secretToken()
        #expect(response.status == 503)
        #expect(try JSONValue(parsing: response.body)["error"] == .string("temporarily_unavailable"))
        await harness.simulator.clearFaults()
        #expect(await harness.secretToken().status == 200)
    }

    @Test func probabilityIsSeeded() async throws {
        func run() async throws -> [Int] {
            let harness = try SimulatorHarness {
                $0.seed = 99; $0.faults = [Fault(target: .alerts, kind: .status, status: 500, probability: 0.5)]
            }
            let token = try await harness.accessToken()
            var statuses: [Int] = []
            for _ in 0..<40 { statuses.append(await harness.get(token: token).response.status) }
            return statuses
        }
        let first = try await run()
        #expect(first == (try await run()))
        #expect(first.contains(500) && first.contains(200))
    }

    @Test func bodyFaults() async throws {
        let harness = try SimulatorHarness()
        let token = try await harness.accessToken()
        try await harness.simulator.addFault(Fault(target: .alerts, kind: .invalidJSON, count: 1))
        try await harness.simulator.addFault(Fault(target: .alerts, kind: .wrongContentType, count: 1))
        try await harness.simulator.addFault(Fault(target: .alerts, kind: .stall, count: 1))
        try await harness.simulator.addFault(Fault(target: .alerts, kind: .truncated, count: 1))
        try await harness.simulator.addFault(Fault(target: .alerts, kind: .delay, seconds: 2, count: 1))
        let invalid = await harness.get(token: token)
        #expect(throws: (any Error).self) { try JSONValue(parsing: invalid.response.body) }
        #expect(await harness.get(token: token).response.header("Content-Type")?.hasPrefix("text/html") == true)
        #expect(await harness.get(token: token).delivery == .stall)
        #expect(await harness.get(token: token).delivery == .truncated)
        #expect(await harness.get(token: token).delivery == .delayed(.seconds(2)))
        #expect(await harness.get(token: token).delivery == .normal)
    }

    @Test func rateLimitWithRetryAfterAndViolations() async throws {
        let harness = try SimulatorHarness {
            $0.rateLimitPerMinute = 3; $0.rateLimitPerHour = 5
        }
        let token = try await harness.accessToken()
        for _ in 0..<3 { #expect(await harness.get(token: token).response.status == 200) }
        let limited = await harness.get(token: token)
        #expect(limited.response.status == 429)
        #expect(limited.response.header("Retry-After") == "60")
        #expect(try JSONValue(parsing: limited.response.body)["error"]?["code"] == .string("TooManyRequests"))
        harness.clock.advance(seconds: 30)
        let early = await harness.get(token: token)
        #expect(early.response.status == 429)
        #expect(early.response.header("Retry-After") == "30")
        var counters = await harness.simulator.counterSnapshot
        #expect(counters.rateLimited == 2)
        #expect(counters.callsIgnoringRetryAfter == 1)
        harness.clock.advance(seconds: 31)
        #expect(await harness.get(token: token).response.status == 200)
        #expect(await harness.get(token: token).response.status == 200)
        // Hour budget (5) spent: the next call waits for the first call to leave the hour.
        let hourly = await harness.get(token: token)
        #expect(hourly.response.status == 429)
        #expect(Int(hourly.response.header("Retry-After") ?? "") == 3600 - 61)
        counters = await harness.simulator.counterSnapshot
        #expect(counters.count("alerts", status: 200) == 5)
        #expect(counters.count("alerts", status: 429) == 3)
    }

    @Test func rateLimitBurstFault() async throws {
        let harness = try SimulatorHarness { $0.faults = [Fault(target: .alerts, kind: .rateLimit, retryAfter: 7, count: 1)] }
        let token = try await harness.accessToken()
        let outcome = await harness.get(token: token)
        #expect(outcome.response.status == 429)
        #expect(outcome.response.header("Retry-After") == "7")
        harness.clock.advance(seconds: 3)
        #expect(await harness.get(token: token).response.status == 200)  // served, but too early
        harness.clock.advance(seconds: 5)
        #expect(await harness.get(token: token).response.status == 200)
        #expect(await harness.simulator.counterSnapshot.callsIgnoringRetryAfter == 1)
        #expect(await harness.simulator.counterSnapshot.sentInsideRetryAfter == 1)
    }

    @Test func aRequestSentAfterA429WasAnsweredIsCountedOneOnItsWayIsNot() async throws {
        let harness = try SimulatorHarness {
            $0.faults = [Fault(target: .alerts, kind: .rateLimit, retryAfter: 2, count: 1)]
            $0.rateLimitPerMinute = 3
        }
        let token = try await harness.accessToken()
        let sent = harness.clock.now()
        harness.clock.advance(seconds: 0.001)
        #expect(await harness.get(token: token).response.status == 429)
        // Arrived (its head read) before the 429 went out, handled after: on its way, not counted.
        let onItsWay = SimulatorRequest(
            method: "GET", path: "/api/alerts", headers: [("Authorization", "Bearer \(token)")],
            baseURL: SimulatorHarness.base, arrivedAt: sent)
        #expect(await harness.simulator.handle(onItsWay).response.status == 200)
        var counters = await harness.simulator.counterSnapshot
        #expect(counters.callsIgnoringRetryAfter == 1 && counters.sentInsideRetryAfter == 0)
        // Sent once the 429 had been answered, inside its 2 seconds: counted.
        harness.clock.advance(seconds: 1)
        #expect(await harness.get(token: token).response.status == 200)
        counters = await harness.simulator.counterSnapshot
        #expect(counters.sentInsideRetryAfter == 1)
        // After it: not counted.
        harness.clock.advance(seconds: 1.5)
        #expect(await harness.get(token: token).response.status == 200)
        // The rate limiter's own 429 (3 a minute; the fault's 429 was not counted): counted the same way.
        #expect(await harness.get(token: token).response.status == 429)
        harness.clock.advance(seconds: 1)
        #expect(await harness.get(token: token).response.status == 429)
        counters = await harness.simulator.counterSnapshot
        #expect(counters.sentInsideRetryAfter == 2)
    }
}
