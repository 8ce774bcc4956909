import DefenderAPI
import DefenderSimulator
import Foundation
import Logging
import Synchronization
import TestSupport
import Testing
import Timekeeping

@testable import AlertForwarder

/// The simulator with the app of ``ConfigFixture/tenant`` registered (its canary secret).
func fixtureSimulator(_ configure: (inout SimulatorConfiguration) -> Void = { _ in }) throws -> SimulatedDefender {
    var configuration = SimulatorConfiguration()
    configuration.apps = [
        RegisteredApp(
            tenantID: SimulatorConfiguration.defaultTenant.id, clientID: "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c",
            secrets: [ConfigFixture.canary])
    ]
    configure(&configuration)
    return try SimulatedDefender(configuration: configuration)
}

/// A sink that keeps the alert ids it was sent, in order.
private final class RecordingSink: AlertSink {
    let received = Mutex<[String]>([])

    func send(_ records: [OutboxRecord]) async throws(SinkError) -> [SinkRejection] {
        received.withLock { $0 += records.map(\.alertID) }
        return []
    }
}

@Suite("Backpressure")
struct BackpressureTests {
    @Test func pollingPausesAboveMaxOutboxAndResumes() async throws {
        let fixture = ConfigFixture()
        let simulator = try fixtureSimulator()
        try await simulator.generateAlerts(count: 8)
        let records = LogRecords()
        try await withLiveSimulatorAndClient(simulator) { base, transport in
            let configuration = try fixture.load(ConfigFixture.tenant + "\napi_url = \"\(base)\"\nlogin_url = \"\(base)\"\n" + ConfigFixture.sink)
            let tenant = configuration.tenants[0]
            let store = try StateStore.embedded(directory: fixture.directory.file("state"))
            // Sink workers are woken only when a poll queued alerts for them.
            let wakeUps = Mutex(0)
            let poller = TenantPoller(
                tenant: tenant, clients: try TenantClients(tenant: tenant, transport: transport, logger: records.logger()),
                store: store, sinks: ["journal"], maxOutbox: 5, queued: { wakeUps.withLock { $0 += 1 } },
                logger: records.logger())
            // The page that took the outbox above max_outbox is kept, and is the last one read.
            #expect(await poller.pollOnce() == .paused(outbox: 8))
            #expect(wakeUps.withLock { $0 } == 1)
            try await simulator.generateAlerts(count: 2)
            #expect(await poller.pollOnce() == .paused(outbox: 8))
            #expect(wakeUps.withLock { $0 } == 1)
            #expect(records.at(.warning).contains { $0.message.contains("polling paused") })
            // The sink catches up: polling resumes by itself, nothing was dropped.
            try await store.outbox.confirm(store.outbox.pending(sink: "journal", limit: 100))
            #expect(await poller.pollOnce() == .completed(newAlerts: 2, duplicates: 8))
            #expect(wakeUps.withLock { $0 } == 2)
            #expect(await poller.pollOnce() == .completed(newAlerts: 0, duplicates: 10))
            #expect(wakeUps.withLock { $0 } == 2, "a poll that queued nothing woke the workers")
        }
    }
}

/// A backlog far above `max_outbox` with the sink down: a poll stops reading after the page
/// that took the outbox over the bound (before, one poll took in the whole backlog), and the
/// watermark stays where the next polls read the rest: once the sink is back, every alert is
/// delivered exactly once.
@Suite("Backpressure within a poll")
struct BackpressureWithinAPollTests {
    @Test func aPollStopsAtThePageThatFillsTheOutboxAndTheRestComesLaterExactlyOnce() async throws {
        let fixture = ConfigFixture()
        // The simulator's call limits (and the budget's, below) out of the way: this is about
        // the outbox, and a backlog read 100 at a time takes more calls than a minute allows.
        let simulator = try fixtureSimulator {
            $0.rateLimitPerMinute = 1_000_000; $0.rateLimitPerHour = 10_000_000
        }
        // 5,000 alerts over 100 minutes of the last two hours (5 every 6 seconds).
        let start = Timestamp(Date()).adding(seconds: -7200)
        var expected: Set<String> = []
        for step in 0..<1000 {
            expected.formUnion(try await simulator.generateAlerts(count: 5, lastUpdateTime: start.adding(seconds: Double(step * 6))))
        }
        #expect(expected.count == 5000)
        let generated = expected
        let records = LogRecords()
        try await withLiveSimulatorAndClient(simulator) { base, transport in
            let configuration = try fixture.load(
                ConfigFixture.tenant + """

                    api_url = "\(base)"
                    login_url = "\(base)"
                    page_size = 100
                    overlap = "1m"
                    """ + "\n" + ConfigFixture.sink)
            let tenant = configuration.tenants[0]
            let store = try StateStore.embedded(directory: fixture.directory.file("state"))
            let connection = try TenantClients(
                tenant: tenant, transport: transport, budget: RateBudget(perMinute: 1_000_000, perHour: 10_000_000),
                logger: records.logger())
            let poller = TenantPoller(
                tenant: tenant, clients: connection, store: store, sinks: ["journal"], maxOutbox: 500,
                logger: records.logger())
            // The sink is down (nothing drains): each poll stops at the page that crossed 500.
            for _ in 0..<3 {
                guard case .paused(let outbox) = await poller.pollOnce() else {
                    Issue.record("a poll with the outbox over max_outbox did not pause")
                    return
                }
                #expect(outbox > 500 && outbox <= 500 + 100)
                #expect(try await store.outbox.depth()["journal", default: 0] <= 500 + 100)
            }
            #expect(records.at(.warning).contains { $0.message.contains("this poll stops reading here") })
            // The sink is back: drain and poll until a poll reads to the end.
            let sink = RecordingSink()
            let worker = SinkWorker(name: "journal", sink: sink, store: store, logger: records.logger())
            var polls = 0
            while true {
                try await worker.drain()
                let outcome = await poller.pollOnce()
                polls += 1
                #expect(try await store.outbox.depth()["journal", default: 0] <= 500 + 100)
                if case .completed = outcome { break }
                guard case .paused = outcome, polls < 100 else {
                    Issue.record("poll \(polls) ended \(outcome)")
                    return
                }
            }
            try await worker.drain()
            let delivered = sink.received.withLock { $0 }
            #expect(delivered.count == 5000, "every alert exactly once")
            #expect(Set(delivered) == generated)
        }
    }
}

/// A running poller whose wall clock jumps back and forward by hours reads on without a gap:
/// the watermark comes from the alerts and the server's clock, never the local one (the
/// libfaketime row of the reliability suite cannot jump a running daemon back; see README).
@Suite("Wall clock jumps")
struct WallClockJumpTests {
    @Test func pollsReadOnWhateverTheLocalClockSays() async throws {
        let fixture = ConfigFixture()
        let simulator = try fixtureSimulator()
        let offset = Mutex<TimeInterval>(0)
        try await withLiveSimulatorAndClient(simulator) { base, transport in
            let configuration = try fixture.load(ConfigFixture.tenant + "\napi_url = \"\(base)\"\nlogin_url = \"\(base)\"\n" + ConfigFixture.sink)
            let tenant = configuration.tenants[0]
            let store = try StateStore.embedded(directory: fixture.directory.file("state"))
            let poller = TenantPoller(
                tenant: tenant, clients: try TenantClients(tenant: tenant, transport: transport, logger: LogRecords().logger()),
                store: store, sinks: ["journal"], maxOutbox: 1_000_000,
                wallClock: { Date().addingTimeInterval(offset.withLock { $0 }) }, logger: LogRecords().logger())
            var expected: Set<String> = []
            for jump in [0, 3 * 3600, -5 * 3600, 26 * 3600, -26 * 3600, 0] as [TimeInterval] {
                offset.withLock { $0 = jump }
                expected.formUnion(try await simulator.generateAlerts(count: 7))
                guard case .completed = await poller.pollOnce() else { Issue.record("a poll failed with the clock at \(jump) s"); return }
            }
            let queued = try await store.outbox.pending(sink: "journal", limit: 1000).records.map(\.alertID)
            #expect(Set(queued) == expected)
            #expect(queued.count == expected.count)
        }
    }
}
