import Foundation
import TestSupport
import Testing

@testable import AlertForwarder

/// The bytes of alerts just admitted, kept for this daemon's sinks so that they are not read
/// back from PostgreSQL.
@Suite("Recent payloads")
struct RecentPayloadsTests {
    @Test func theOldestGoFirstWhenTheBudgetIsSpentAndWhatEverySinkTookIsForgotten() {
        let recent = RecentPayloads(budget: 10)
        recent.add([(1, [1, 1, 1, 1]), (2, [2, 2, 2, 2])])
        #expect(recent.usage == (2, 8))
        recent.add([(3, [3, 3, 3, 3])])  // 12 bytes > 10: the oldest goes
        #expect(recent.payloads([1, 2, 3]) == [2: [2, 2, 2, 2], 3: [3, 3, 3, 3]])
        recent.remove([2, 7])
        #expect(recent.usage == (1, 4))
        // Larger than the whole budget: never held; an id held already: kept as it was.
        recent.add([(4, Array(repeating: 4, count: 11)), (3, [9])])
        #expect(recent.payloads([3, 4]) == [3: [3, 3, 3, 3]])
        recent.remove([3])
        #expect(recent.usage == (0, 0))
    }

    @Test func manyAlertsComeAndGoWithinTheBudget() {
        let recent = RecentPayloads(budget: 3000)
        for round in 0..<100 {
            let ids = (0..<100).map { Int64(round * 100 + $0) }
            recent.add(ids.map { ($0, [UInt8](repeating: 1, count: 10)) })
            #expect(recent.usage.bytes <= 3000)
            if round.isMultiple(of: 2) { recent.remove(ids) }
        }
        #expect(recent.payloads([9999]) == [9999: [UInt8](repeating: 1, count: 10)])
    }
}

@Suite("Recent payloads in PostgreSQL", .enabled(if: TestPostgres.isAvailable, TestPostgres.reason))
struct PostgresRecentPayloadsTests {
    /// The daemon that admitted alerts delivers them from memory; another (a member that took
    /// the tenant over, or the same after a restart) reads them from `outbox`: the same records.
    @Test func aSinkGetsTheSameRecordsFromMemoryAndFromTheServer() async throws {
        try await TestPostgres.withState { store, database in
            let titled = try makeAlert(
                "a", "2025-03-14T10:00:00Z", extra: [("title", .string("Suspicious LSASS access")), ("computerDnsName", .string("ws-1"))])
            let alerts = try [titled] + (1...4).map { try makeAlert("a\($0)", "2025-03-14T10:00:0\($0)Z") }
            _ = try await store.admission.admit(tenant: "t", alerts: alerts, forward: .new, sinks: ["x"])
            let fromMemory = try await store.outbox.pending(sink: "x", limit: 10).records
            let other = StateStore.postgres(database)
            let fromServer = try await other.outbox.pending(sink: "x", limit: 10).records
            #expect(fromMemory.map(\.payloadBytes) == alerts.map { [UInt8]($0.bytes) })
            #expect(fromServer == fromMemory)
            #expect(fromServer[0].headline.title == "Suspicious LSASS access")
            // Confirmed by every sink: nothing is kept for them any more.
            let recent = try #require((store.outbox as? PostgresOutbox)?.recent)
            #expect(recent.usage.count == 5)
            try await store.outbox.confirm(try await store.outbox.pending(sink: "x", limit: 10))
            #expect(recent.usage.count == 0)
            #expect(try await other.outbox.pending(sink: "x", limit: 10).records.isEmpty)
        }
    }

    /// The order a sink reads is the page's, when ids come from the sequence at admission.
    @Test func alertsAreReadInTheOrderOfThePage() async throws {
        try await TestPostgres.withState { store, _ in
            let alerts = try (0..<300).map { try makeAlert("id-\(299 - $0)", "2025-03-14T10:00:00Z") }
            _ = try await store.admission.admit(tenant: "t", alerts: alerts, forward: .new, sinks: ["x", "y"])
            #expect(try await store.outbox.pending(sink: "y", limit: 500).records.map(\.alertID) == alerts.map(\.id))
        }
    }
}
