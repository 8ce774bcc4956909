import DefenderAPI
import Foundation
import OrderedJSON
import TestSupport
import Testing
import Timekeeping

@testable import AlertForwarder

/// `state migrate`: an embedded state moves into an empty PostgreSQL state whole, in order,
/// and is then marked moved.
@Suite("State migration to PostgreSQL", .enabled(if: TestPostgres.isAvailable, TestPostgres.reason))
struct StateMigrationTests {
    struct Snapshot: Equatable {
        var tenants: [TenantState]
        var watermarks: [Timestamp?]
        var pending: [String: [OutboxRecord]]
        var depth: [String: Int]
        var deadLetters: [String]
        var quarantined: [Data]
        var schedule: Reconciliation?
    }

    static func snapshot(_ store: StateStore) async throws -> Snapshot {
        var pending: [String: [OutboxRecord]] = [:]
        for sink in ["x", "y"] {
            // Re-queued dead letters come first; the outbox after them is what is compared here.
            pending[sink] = try await store.outbox.pending(sink: sink, limit: 1000).records
        }
        return Snapshot(
            tenants: try await store.admission.tenants(),
            watermarks: [try await store.admission.watermark(tenant: "t"), try await store.admission.watermark(tenant: "u")],
            pending: pending, depth: try await store.outbox.depth(),
            deadLetters: try await store.deadLetters.all().map { "\($0.sink) \($0.alertID) \($0.reason) \($0.markedForRequeue)" },
            quarantined: try await store.quarantine.all().map(\.bytes),
            schedule: try await store.schedules.reconciliation(tenant: "t"))
    }

    @Test func everythingMovesInOrderAndNothingIsDeliveredAgain() async throws {
        let directory = TemporaryDirectory()
        let path = directory.file("state")
        let before: Snapshot
        do {
            // Small segments: the queued alerts span several of them.
            let embedded = try StateStore.embedded(directory: path, segmentSize: 4096)
            let alerts = try (1...30).map {
                try makeAlert("a\($0)", "2025-03-14T10:00:\(String(format: "%02d", $0))Z", extra: [("title", .string("Alert \($0)"))])
            }
            _ = try await embedded.admission.admit(tenant: "t", alerts: Array(alerts[..<20]), forward: .new, sinks: ["x", "y"])
            _ = try await embedded.admission.admit(
                tenant: "t", alerts: Array(alerts[20...]),
                rejected: [RejectedElement(bytes: Data(#"{"id":1}"#.utf8), reason: "no lastUpdateTime")],
                forward: .new, sinks: ["x", "y"])
            _ = try await embedded.admission.admit(
                tenant: "u", alerts: try (1...5).map { try makeAlert("b\($0)", "2025-03-14T11:00:00Z") },
                forward: .updates, sinks: ["y"])
            // An incident: its own cursor and key, and it stays an incident.
            _ = try await embedded.admission.admit(
                stream: RecordStream(tenant: "u", kind: .incident), alerts: [try makeIncident("b1", "2025-03-14T11:30:00Z")],
                forward: .new, sinks: ["y"])
            let first = try await embedded.outbox.pending(sink: "x", limit: 10)
            try await embedded.outbox.confirm(first, rejected: [SinkRejection(recordID: first.records[3].id, reason: "too large")])
            try await embedded.outbox.confirm(try await embedded.outbox.pending(sink: "y", limit: 3))
            try await embedded.schedules.scheduleReconciliation(tenant: "t", due: Date(timeIntervalSince1970: 1_800_000_000))
            before = try await Self.snapshot(embedded)
            _ = try await embedded.deadLetters.markForRequeue(sink: "x")
        }
        #expect(before.pending["x"]?.count == 20 && before.pending["y"]?.count == 33)
        #expect(before.pending["y"]?.last?.kind == .incident)

        try await TestPostgres.withState { store, database in
            let summary = try await StateMigration.embeddedToPostgres(directory: path, database: database)
            #expect(summary.tenants == 3 && summary.dedupKeys == 36 && summary.queuedAlerts == 33 && summary.queuedForSinks == 53)
            #expect(summary.deadLetters == 1 && summary.quarantined == 1)
            // The re-queued dead letter comes first for x, as it would have embedded.
            let requeued = try await store.outbox.pending(sink: "x", limit: 10)
            #expect(requeued.requeued && requeued.records.map(\.alertID) == ["a4"])
            try await store.outbox.confirm(requeued, rejected: [SinkRejection(recordID: requeued.records[0].id, reason: "too large")])
            var after = try await Self.snapshot(store)
            #expect(after == before)
            #expect(try await store.admission.watermark(of: RecordStream(tenant: "u", kind: .incident)) == Timestamp(parsing: "2025-03-14T11:30:00Z"))
            after.pending = [:]
            // Nothing is delivered again: the alerts moved are known, the next are new and
            // come after every alert moved, for each sink.
            let again = try await store.admission.admit(
                tenant: "t", alerts: [try makeAlert("a1", "2025-03-14T10:00:01Z"), try makeAlert("a31", "2025-03-14T10:01:00Z")],
                forward: .new, sinks: ["x", "y"])
            #expect(again.duplicates == 1 && again.newAlerts == 1)
            #expect(try await store.outbox.pending(sink: "x", limit: 100).records.last?.alertID == "a31")
            #expect(try await store.outbox.pending(sink: "y", limit: 100).records.last?.alertID == "a31")
            // A second migration, into a state that is no longer empty, is refused.
            let twice = await #expect(throws: StateError.self) {
                _ = try await StateMigration.embeddedToPostgres(directory: path, database: database)
            }
            #expect(twice?.kind == .incompatible || twice?.kind == .conflict)
        }
        // The moved directory is refused to a daemon, with what to do.
        let refused = #expect(throws: StateError.self) { try StateStore.embedded(directory: path) }
        #expect(refused?.description.contains("moved to postgresql://") == true, "\(refused?.description ?? "")")
        #expect(refused?.description.contains("MOVED-TO-POSTGRESQL") == true)
    }

    /// The signed-in users' refresh tokens move sealed: a sealed file as it is, a plain one
    /// sealed on the way; the group's members open them with the token key, and one sealed
    /// with another key is refused.
    @Test func refreshTokensMoveSealed() async throws {
        let directory = TemporaryDirectory()
        let path = directory.file("state")
        let key = Secret("CANARY-migration-token-key")
        let client = "0a6e9f2c-51d4-4c7e-9b8a-3f2e1d0c9b8a"
        _ = try StateStore.embedded(directory: path)
        try RefreshTokenStore(stateDirectory: path, tenant: "sealed", clientID: client, key: key).save(Secret("0.SIMRT.sealed-token"))
        try RefreshTokenStore(stateDirectory: path, tenant: "plain", clientID: client, key: nil).save(Secret("0.SIMRT.plain-token"))
        let seals = ["sealed", "plain", "never-signed-in"].map { RefreshTokenSeal(tenant: $0, clientID: client, key: key) }
        try await TestPostgres.withState { _, database in
            let summary = try await StateMigration.embeddedToPostgres(directory: path, database: database, userTokens: seals)
            #expect(summary.userTokens == 2)
            let raw = try await database.query("test", "SELECT encode(sealed, 'escape') FROM user_token ORDER BY tenant")
            let texts = try raw.map { try $0.decode(String.self) }
            #expect(texts.count == 2 && texts.allSatisfy { $0.hasPrefix("DAT-SEALED-1") && !$0.contains("0.SIMRT.") }, "\(texts)")
            let token = { (tenant: String, key: Secret?) in
                PostgresUserToken(database: database, seal: RefreshTokenSeal(tenant: tenant, clientID: client, key: key))
            }
            #expect(try await token("sealed", key).load()?.withValue { $0 } == "0.SIMRT.sealed-token")
            #expect(try await token("plain", key).load()?.withValue { $0 } == "0.SIMRT.plain-token")
            #expect(try await token("never-signed-in", key).load() == nil)
            await #expect(throws: RefreshTokenStore.Failure.self) { _ = try await token("sealed", Secret("another key")).load() }
            // Without a key nothing goes into the database in plain text.
            await #expect(throws: RefreshTokenStore.Failure.self) { try await token("plain", nil).save(Secret("0.SIMRT.x")) }
            #expect(try await token("plain", key).load()?.withValue { $0 } == "0.SIMRT.plain-token")
        }
    }
}
