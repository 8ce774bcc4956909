@testable import AlertForwarder
import DefenderAPI
import DefenderSimulator
import Foundation
import Logging
import Synchronization
import Testing
import TestSupport

/// The simulator with the app of ``ConfigFixture/tenant`` registered (its canary secret).
func fixtureSimulator() throws -> SimulatedDefender {
    var configuration = SimulatorConfiguration()
    configuration.apps = [RegisteredApp(tenantID: SimulatorConfiguration.defaultTenant.id, clientID: "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c",
                                        secrets: [ConfigFixture.canary])]
    return try SimulatedDefender(configuration: configuration)
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
            let store = try StateStore(directory: fixture.directory.file("state"))
            // Sink workers are woken only when a poll queued alerts for them.
            let wakeUps = Mutex(0)
            let poller = TenantPoller(tenant: tenant, connection: try TenantConnection(tenant: tenant, transport: transport, logger: records.logger()),
                                      store: store, sinks: ["journal"], maxOutbox: 5, queued: { wakeUps.withLock { $0 += 1 } },
                                      logger: records.logger())
            #expect(await poller.pollOnce() == .completed(newAlerts: 8, duplicates: 0))
            #expect(wakeUps.withLock { $0 } == 1)
            try await simulator.generateAlerts(count: 2)
            #expect(await poller.pollOnce() == .paused(outbox: 8))
            #expect(wakeUps.withLock { $0 } == 1)
            #expect(records.at(.warning).contains { $0.message.contains("polling paused") })
            // The sink catches up: polling resumes by itself, nothing was dropped.
            try store.confirm(store.pending(sink: "journal", limit: 100))
            #expect(await poller.pollOnce() == .completed(newAlerts: 2, duplicates: 8))
            #expect(wakeUps.withLock { $0 } == 2)
            #expect(await poller.pollOnce() == .completed(newAlerts: 0, duplicates: 10))
            #expect(wakeUps.withLock { $0 } == 2, "a poll that queued nothing woke the workers")
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
            let store = try StateStore(directory: fixture.directory.file("state"))
            let poller = TenantPoller(tenant: tenant, connection: try TenantConnection(tenant: tenant, transport: transport, logger: LogRecords().logger()),
                                      store: store, sinks: ["journal"], maxOutbox: 1_000_000,
                                      wallClock: { Date().addingTimeInterval(offset.withLock { $0 }) }, logger: LogRecords().logger())
            var expected: Set<String> = []
            for jump in [0, 3 * 3600, -5 * 3600, 26 * 3600, -26 * 3600, 0] as [TimeInterval] {
                offset.withLock { $0 = jump }
                expected.formUnion(try await simulator.generateAlerts(count: 7))
                guard case .completed = await poller.pollOnce() else { Issue.record("a poll failed with the clock at \(jump) s"); return }
            }
            let queued = try store.pending(sink: "journal", limit: 1000).records.map(\.alertID)
            #expect(Set(queued) == expected)
            #expect(queued.count == expected.count)
        }
    }
}
