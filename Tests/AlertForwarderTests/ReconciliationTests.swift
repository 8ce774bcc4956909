import DefenderAPI
import DefenderSimulator
import Foundation
import Telemetry
import TestSupport
import Testing
import Timekeeping

@testable import AlertForwarder

/// Reconciliation sweeps against the simulator served on loopback: an alert that became
/// visible later than `overlap` is missed by every poll and delivered by the next sweep.
@Suite("Reconciliation sweeps")
struct ReconciliationTests {
    let fixture = ConfigFixture()

    /// Runs `body` with a poller of the fixture tenant (`overlap = "15m"`) on `simulator`.
    func withPoller(
        _ simulator: SimulatedDefender, telemetry: Telemetry = Telemetry(), records: LogRecords = LogRecords(),
        _ body: @Sendable @escaping (TenantPoller, StateStore) async throws -> Void
    ) async throws {
        let fixture = self.fixture
        try await withLiveSimulatorAndClient(simulator) { base, transport in
            let configuration = try fixture.load(
                ConfigFixture.tenant + "\napi_url = \"\(base)\"\nlogin_url = \"\(base)\"\noverlap = \"15m\"\n"
                    + ConfigFixture.sink)
            let tenant = configuration.tenants[0]
            let store = try StateStore.embedded(directory: fixture.directory.file("state"))
            let metrics = TenantMetrics(telemetry: telemetry, tenant: tenant.name, api: "mde")
            let poller = TenantPoller(
                tenant: tenant,
                clients: try TenantClients(
                    tenant: tenant, transport: transport, metrics: metrics,
                    logger: records.logger()),
                store: store, sinks: ["journal"], maxOutbox: 1_000_000, metrics: metrics, logger: records.logger())
            try await body(poller, store)
        }
    }

    @Test func anAlertVisibleThirtyMinutesLateIsMissedByThePollsAndFoundByTheSweep() async throws {
        let simulator = try fixtureSimulator()
        let telemetry = Telemetry()
        let records = LogRecords()
        let onTime = try await simulator.generateAlerts(count: 3)
        try await withPoller(simulator, telemetry: telemetry, records: records) { poller, store in
            #expect(await poller.pollOnce() == .completed(newAlerts: 3, duplicates: 0))
            // Updated 30 minutes ago, visible only now: before the overlap of every poll from here on.
            let now = Timestamp(Date())
            let late = try await simulator.generateAlerts(count: 1, lastUpdateTime: now.adding(ticks: -30 * 60 * 10_000_000))
            #expect(await poller.pollOnce() == .completed(newAlerts: 0, duplicates: 3))
            #expect(await poller.pollOnce() == .completed(newAlerts: 0, duplicates: 3))
            guard case .completed(let found, let lag?) = await poller.reconcile() else { Issue.record("the sweep did not complete"); return }
            #expect(found == 1)
            // By the server's clock: its Date header, in whole seconds, which the server
            // refreshes once a second (up to two seconds short of the local clock).
            #expect(lag >= .seconds(1798) && lag < .seconds(1900))
            #expect(try await store.outbox.pending(sink: "journal", limit: 100).records.map(\.alertID).sorted() == (onTime + late).sorted())
            let warning = try #require(records.at(.warning).first { $0.message.contains("reconciliation sweep found an alert the polls missed") })
            #expect(warning.metadata["alert_id"]?.description == late[0])
            #expect(Int(warning.metadata["lag_seconds"]?.description ?? "") ?? 0 >= 1798)
            // Once only: the next sweep finds nothing new, and one sweep does not yet suggest a larger overlap.
            #expect(await poller.reconcile() == .completed(found: 0, maximumLag: nil))
            #expect(!records.all.contains { $0.message.contains("consider overlap") })
            let text = telemetry.exposition(.prometheus)
            #expect(text.contains(#"defender_alertd_alerts_found_by_reconciliation_total{tenant="contoso",api="mde",records="alerts"} 1"#), "\(text)")
            #expect(text.contains(#"defender_alertd_reconciliation_sweeps_total{tenant="contoso",api="mde",records="alerts",result="ok"} 2"#))
            // Its lag is counted; the first poll's history is not.
            #expect(text.contains(#"defender_alertd_visibility_lag_seconds_count{tenant="contoso",api="mde",records="alerts"} 1"#))
            #expect(text.contains(#"defender_alertd_visibility_lag_seconds_bucket{tenant="contoso",api="mde",records="alerts",le="900.0"} 0"#))
        }
    }

    @Test func sweepsThatKeepFindingAlertsSuggestALargerOverlap() async throws {
        let simulator = try fixtureSimulator()
        let records = LogRecords()
        _ = try await simulator.generateAlerts(count: 2)
        try await withPoller(simulator, records: records) { poller, _ in
            #expect(await poller.pollOnce() == .completed(newAlerts: 2, duplicates: 0))
            // 39 minutes: the advice (the lag plus 5 minutes, in 5-minute steps) stays "45m" however long the sweep takes to come (up to a minute).
            _ = try await simulator.generateAlerts(count: 2, lastUpdateTime: Timestamp(Date()).adding(ticks: -39 * 60 * 10_000_000))
            // The last sweep found some too.
            guard case .completed(2, _) = await poller.reconcile(previousFound: 1) else { Issue.record("expected 2 found"); return }
            let advice = try #require(records.at(.warning).first { $0.message.contains("consider overlap") })
            #expect(advice.message.contains("consider overlap = \"45m\""), "\(advice.message)")
        }
    }

    @Test func aSweepReadsOnlyWhatThePollsNoLongerReRead() async throws {
        let simulator = try fixtureSimulator()
        try await withPoller(simulator) { poller, _ in
            // No poll yet: nothing to reconcile.
            #expect(await poller.reconcile() == .skipped)
            _ = try await simulator.generateAlerts(count: 2)
            #expect(await poller.pollOnce() == .completed(newAlerts: 2, duplicates: 0))
            // An alert late by less than the overlap is the next poll's, not the sweep's.
            _ = try await simulator.generateAlerts(count: 1, lastUpdateTime: Timestamp(Date()).adding(ticks: -5 * 60 * 10_000_000))
            #expect(await poller.reconcile() == .completed(found: 0, maximumLag: nil))
            #expect(await poller.pollOnce() == .completed(newAlerts: 1, duplicates: 2))
        }
    }

    @Test func theScheduleSurvivesARestart() async throws {
        let directory = fixture.directory.file("state")
        let due = Date(timeIntervalSince1970: 1_800_000_000)
        do {
            let store = try StateStore.embedded(directory: directory)
            #expect(try await store.schedules.reconciliation(tenant: "contoso") == nil)
            try await store.schedules.scheduleReconciliation(tenant: "contoso", due: due)
            try await store.schedules.scheduleReconciliation(tenant: "contoso", due: due.addingTimeInterval(3600), sweptAt: due, found: 4)
        }
        let reopened = try StateStore.embedded(directory: directory)
        #expect(
            try await reopened.schedules.reconciliation(tenant: "contoso")
                == Reconciliation(due: due.addingTimeInterval(3600), sweptAt: due, found: 4))
        // A schedule without a sweep keeps what the last sweep found.
        try await reopened.schedules.scheduleReconciliation(tenant: "contoso", due: due.addingTimeInterval(7200))
        #expect(try await reopened.schedules.reconciliation(tenant: "contoso")?.found == 4)
        try await reopened.admission.reset(tenant: "contoso")
        #expect(try await reopened.schedules.reconciliation(tenant: "contoso") == nil)
    }
}
