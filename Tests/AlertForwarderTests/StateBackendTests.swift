import DefenderAPI
import Foundation
import OrderedJSON
import TestSupport
import Testing
import Timekeeping

@testable import AlertForwarder

/// What every state backend must do alike: the same calls and the same answers, embedded and
/// in PostgreSQL (against a real server, `make test` starts one).
/// The checks, each run by both suites below.
enum StateContract {
    enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case embedded, postgresql
        var testDescription: String { rawValue }
    }

    /// Runs `body` with a new, empty state of `backend`.
    static func withState(_ backend: Backend, _ body: @escaping @Sendable (StateStore) async throws -> Void) async throws {
        switch backend {
        case .embedded:
            let directory = TemporaryDirectory()
            try await body(StateStore.embedded(directory: directory.file("state")))
        case .postgresql:
            try await TestPostgres.withState { store, _ in try await body(store) }
        }
    }

    static func admissionDedupsQueuesAndMovesTheWatermark(_ backend: Backend) async throws {
        try await Self.withState(backend) { store in
            let first = try await store.admission.admit(
                tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z"), try makeAlert("b", "2025-03-14T10:00:05.5Z")],
                forward: .new, sinks: ["x", "y"])
            #expect(first.newAlerts == 2 && first.duplicates == 0 && first.queuedForSinks == 4)
            #expect(try await store.admission.watermark(tenant: "t") == Timestamp(parsing: "2025-03-14T10:00:05.5Z"))
            // The same again, one updated: "new" forwards nothing; the watermark never goes back.
            let again = try await store.admission.admit(
                tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:01:00Z"), try makeAlert("b", "2025-03-14T10:00:05.5Z")],
                forward: .new, sinks: ["x", "y"])
            #expect(again.newAlerts == 0 && again.duplicates == 2)
            #expect(try await store.admission.watermark(tenant: "t") == Timestamp(parsing: "2025-03-14T10:01:00Z"))
            _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("c", "2025-03-14T09:00:00Z")], forward: .new, sinks: ["x"])
            #expect(try await store.admission.watermark(tenant: "t") == Timestamp(parsing: "2025-03-14T10:01:00Z"))
            // Held: admitted, the watermark stays.
            _ = try await store.admission.admit(
                tenant: "t", alerts: [try makeAlert("d", "2025-03-14T11:00:00Z")], forward: .new, sinks: ["x"], watermark: .hold)
            #expect(try await store.admission.watermark(tenant: "t") == Timestamp(parsing: "2025-03-14T10:01:00Z"))
            #expect(try await store.admission.isKnown(tenant: "t", alert: try makeAlert("d", "2025-03-14T11:00:00Z"), forward: .new))
            #expect(try await !store.admission.isKnown(tenant: "u", alert: try makeAlert("d", "2025-03-14T11:00:00Z"), forward: .new))
            #expect(try await store.outbox.depth() == ["x": 4, "y": 2])
            #expect(try await store.admission.tenants() == [TenantState(tenant: "t", watermark: "2025-03-14T10:01:00.0000000Z", dedupKeys: 4)])
            try await store.admission.reset(tenant: "t")
            #expect(try await store.admission.watermark(tenant: "t") == nil)
            #expect(try await store.outbox.depth() == ["x": 4, "y": 2])
        }
    }

    static func updatesAreLabelledAndAVersionTwiceInOnePageIsOneUpdate(_ backend: Backend) async throws {
        try await Self.withState(backend) { store in
            _ = try await store.admission.admit(
                tenant: "t", alerts: [try makeAlert("a|b", "2025-03-14T10:00:00Z"), try makeAlert("a", "2025-03-14T10:00:00Z")],
                forward: .updates, sinks: ["x"])
            let page = try ["a", "ab", "a"].enumerated().map { try makeAlert($1, "2025-03-14T10:0\($0 + 1):00Z") }
            _ = try await store.admission.admit(tenant: "t", alerts: page, forward: .updates, sinks: ["x"])
            let records = try await store.outbox.pending(sink: "x", limit: 20).records
            #expect(records.map(\.alertID) == ["a|b", "a", "a", "ab", "a"])
            #expect(records.map(\.event) == ["created", "created", "updated", "created", "updated"])
        }
    }

    static func eachSinkReadsInOrderWithTheHeadlineAndConfirmsOnce(_ backend: Backend) async throws {
        try await Self.withState(backend) { store in
            let titled = try makeAlert(
                "a", "2025-03-14T10:00:00Z", extra: [("title", .string("Suspicious LSASS access")), ("computerDnsName", .string("ws-1"))])
            _ = try await store.admission.admit(
                tenant: "t", alerts: [titled] + (1...4).map { try makeAlert("a\($0)", "2025-03-14T10:00:0\($0)Z") },
                forward: .new, sinks: ["x", "y"])
            let batch = try await store.outbox.pending(sink: "x", limit: 3)
            #expect(batch.records.map(\.alertID) == ["a", "a1", "a2"])
            #expect(batch.records[0].headline.title == "Suspicious LSASS access")
            #expect(batch.records[0].headline.host == "ws-1")
            #expect(batch.records[0].headline.severity == "High")
            #expect(batch.records[1].headline.title == "Defender alert")
            #expect(batch.records[0].payloadBytes == [UInt8](titled.bytes))
            try await store.outbox.confirm(batch)
            try await store.outbox.confirm(batch)  // a second time moves nothing
            #expect(try await store.outbox.pending(sink: "x", limit: 10).records.map(\.alertID) == ["a3", "a4"])
            #expect(try await store.outbox.pending(sink: "y", limit: 10).records.count == 5)
            #expect(try await store.outbox.depth() == ["x": 2, "y": 5])
            #expect(try await store.outbox.oldestPending(sink: "x") != nil)
            // A sink no longer configured: what waited for it goes.
            #expect(try await store.outbox.drop(except: ["x"]) == 5)
            #expect(try await store.outbox.depth() == ["x": 2])
        }
    }

    /// Two sinks that confirm the same alerts at the same moment: once both have, the alerts
    /// are gone (in PostgreSQL, each confirmation in one transaction saw the other sink's rows
    /// still there, and neither deleted the alert: it stayed, taking room, until a restart).
    static func sinksConfirmingTheSameAlertsAtOnceLeaveNothingBehind(_ backend: Backend) async throws {
        try await Self.withState(backend) { store in
            for round in 0..<20 {
                let alerts = try (0..<50).map { try makeAlert("r\(round)-\($0)", "2025-03-14T10:00:00Z") }
                _ = try await store.admission.admit(tenant: "t", alerts: alerts, forward: .new, sinks: ["x", "y"])
                let (x, y) = try await (store.outbox.pending(sink: "x", limit: 100), store.outbox.pending(sink: "y", limit: 100))
                #expect(x.records.count == 50 && y.records.count == 50)
                async let confirmedX: Void = store.outbox.confirm(x)
                async let confirmedY: Void = store.outbox.confirm(y)
                _ = try await (confirmedX, confirmedY)
            }
            #expect(try await store.outbox.depth() == [:])
            if backend == .postgresql {
                let outbox = try await store.storage.storage().first { $0.name == "outbox" }
                #expect(outbox?.rows == 0, "alerts every sink confirmed are still stored")
            }
        }
    }

    /// No sink shows the headline: none is stored, and a record gives the payload's if asked.
    static func aHeadlineNotStoredIsReadFromThePayload(_ backend: Backend) async throws {
        try await Self.withState(backend) { store in
            let titled = try makeAlert(
                "a", "2025-03-14T10:00:00Z", extra: [("title", .string("Suspicious LSASS access")), ("computerDnsName", .string("ws-1"))])
            _ = try await store.admission.admit(
                tenant: "t", alerts: [titled, try makeAlert("b", "2025-03-14T10:00:01Z")], forward: .new, sinks: ["x"],
                storesHeadline: false)
            let records = try await store.outbox.pending(sink: "x", limit: 3).records
            #expect(records.map(\.headline) == [AlertHeadline(titled), AlertHeadline(try makeAlert("b", "2025-03-14T10:00:01Z"))])
            #expect(records[0].headline.title == "Suspicious LSASS access")
            #expect(records[1].headline.title == "Defender alert")
        }
    }

    static func refusedRecordsBecomeDeadLettersThatCanBeSentAgain(_ backend: Backend) async throws {
        try await Self.withState(backend) { store in
            _ = try await store.admission.admit(
                tenant: "t", alerts: try ["a", "b", "c"].map { try makeAlert($0, "2025-03-14T10:00:00Z") },
                forward: .new, sinks: ["siem"])
            let batch = try await store.outbox.pending(sink: "siem", limit: 10)
            try await store.outbox.confirm(batch, rejected: [SinkRejection(recordID: batch.records[1].id, reason: "too large")])
            #expect(try await store.outbox.depth() == [:])
            let letters = try await store.deadLetters.all()
            #expect(letters.map(\.alertID) == ["b"])
            #expect(letters.first?.reason == "too large")
            #expect(try await store.deadLetters.counts() == ["siem": 1])
            #expect(try await store.deadLetters.markForRequeue(sink: "siem") == 1)
            let requeued = try await store.outbox.pending(sink: "siem", limit: 10)
            #expect(requeued.requeued)
            #expect(requeued.records.map(\.alertID) == ["b"])
            // Refused again: stays, with the new reason, no longer marked.
            try await store.outbox.confirm(requeued, rejected: [SinkRejection(recordID: requeued.records[0].id, reason: "still too large")])
            #expect(try await store.deadLetters.all().map(\.reason) == ["still too large"])
            #expect(try await store.outbox.pending(sink: "siem", limit: 10).records.isEmpty)
            _ = try await store.deadLetters.markForRequeue(sink: nil)
            try await store.outbox.confirm(try await store.outbox.pending(sink: "siem", limit: 10))
            #expect(try await store.deadLetters.all().isEmpty)
            try await store.outbox.confirm(batch, rejected: [SinkRejection(recordID: batch.records[0].id, reason: "x")])
            #expect(try await store.deadLetters.all().isEmpty, "a batch confirmed before adds no dead letter")
            _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("d", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["siem"])
            let last = try await store.outbox.pending(sink: "siem", limit: 10)
            try await store.outbox.confirm(last, rejected: [SinkRejection(recordID: last.records[0].id, reason: "no")])
            #expect(try await store.deadLetters.purge(sink: "siem") == 1)
        }
    }

    /// A tenant's incidents have a watermark and dedup keys of their own (an incident and an
    /// alert may share an id), and are queued, confirmed and dead-lettered as what they are.
    static func incidentsAreAStreamOfTheirOwnAndStayIncidents(_ backend: Backend) async throws {
        try await Self.withState(backend) { store in
            let incidents = RecordStream(tenant: "t", kind: .incident)
            _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("7", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["siem"])
            let admitted = try await store.admission.admit(
                stream: incidents, alerts: try ["7", "8"].map { try makeIncident($0, "2025-03-14T09:00:00Z") },
                forward: .new, sinks: ["siem"])
            #expect(admitted.newAlerts == 2 && admitted.duplicates == 0, "an incident's id is not an alert's")
            #expect(try await store.admission.watermark(tenant: "t") == Timestamp(parsing: "2025-03-14T10:00:00Z"))
            #expect(try await store.admission.watermark(of: incidents) == Timestamp(parsing: "2025-03-14T09:00:00Z"))
            #expect(try await store.admission.isKnown(tenant: "t", alert: try makeIncident("8", "2025-03-14T09:00:00Z"), forward: .new))
            #expect(try await !store.admission.isKnown(tenant: "t", alert: try makeAlert("8", "2025-03-14T09:00:00Z"), forward: .new))
            let again = try await store.admission.admit(
                stream: incidents, alerts: [try makeIncident("8", "2025-03-14T09:00:00Z")], forward: .new, sinks: ["siem"])
            #expect(again.duplicates == 1)
            let batch = try await store.outbox.pending(sink: "siem", limit: 10)
            #expect(batch.records.map(\.kind) == [.alert, .incident, .incident])
            #expect(batch.records.map(\.tenant) == ["t", "t", "t"] && batch.records.map(\.alertID) == ["7", "7", "8"])
            try await store.outbox.confirm(batch, rejected: [SinkRejection(recordID: batch.records[2].id, reason: "refused")])
            #expect(try await store.deadLetters.markForRequeue(sink: "siem") == 1)
            let requeued = try await store.outbox.pending(sink: "siem", limit: 10)
            #expect(requeued.requeued && requeued.records.map(\.kind) == [.incident], "a dead letter stays an incident")
            try await store.admission.reset(tenant: "t")
            #expect(try await store.admission.watermark(of: incidents) == nil)
            #expect(try await store.admission.watermark(tenant: "t") == nil)
            #expect(try await !store.admission.isKnown(tenant: "t", alert: try makeIncident("8", "2025-03-14T09:00:00Z"), forward: .new))
        }
    }

    static func quarantineKeepsAnElementOnceAndSchedulesSurvive(_ backend: Backend) async throws {
        try await Self.withState(backend) { store in
            let element = RejectedElement(bytes: Data(#"{"id":7}"#.utf8), reason: "no lastUpdateTime")
            let first = try await store.admission.admit(tenant: "t", alerts: [], rejected: [element], forward: .new, sinks: ["x"])
            let second = try await store.admission.admit(tenant: "t", alerts: [], rejected: [element], forward: .new, sinks: ["x"])
            #expect(first.quarantined.count == 1 && second.quarantined.isEmpty)
            #expect(try await store.quarantine.all().map(\.bytes) == [element.bytes])
            #expect(try await store.quarantine.counts() == ["t": 1])
            #expect(try await store.quarantine.purge(tenant: "t") == 1)
            let due = Date(timeIntervalSince1970: 1_800_000_000)
            try await store.schedules.scheduleReconciliation(tenant: "t", due: due)
            try await store.schedules.scheduleReconciliation(tenant: "t", due: due.addingTimeInterval(60), sweptAt: due, found: 3)
            try await store.schedules.scheduleReconciliation(tenant: "t", due: due.addingTimeInterval(120))
            #expect(try await store.schedules.reconciliation(tenant: "t") == Reconciliation(due: due.addingTimeInterval(120), sweptAt: due, found: 3))
            #expect(try await store.schedules.reconciliation(tenant: "u") == nil)
        }
    }

    static func oldDedupKeysArePrunedByTheEarlierOfBothClocks(_ backend: Backend) async throws {
        try await Self.withState(backend) { store in
            let old = Date(timeIntervalSince1970: 1_700_000_000)
            _ = try await store.admission.admit(
                tenant: "t", alerts: [try makeAlert("a", "2023-11-14T22:13:20Z")], forward: .new, sinks: ["x"], now: old)
            // The local clock far ahead, the tenant's newest alert not: nothing goes.
            #expect(try await store.admission.pruneDedupKeys(now: old.addingTimeInterval(400 * 86_400)) == 0)
            _ = try await store.admission.admit(
                tenant: "t", alerts: [try makeAlert("b", "2024-12-14T22:13:20Z")], forward: .new, sinks: ["x"],
                now: old.addingTimeInterval(396 * 86_400))
            #expect(try await store.admission.pruneDedupKeys(now: old.addingTimeInterval(400 * 86_400)) == 1)
            #expect(try await store.admission.tenants().first?.dedupKeys == 1)
        }
    }

    /// `state show`'s room per part: the dedup keys and what is queued are counted, and grow
    /// with what is admitted.
    static func storageCountsWhatIsKeptAndGrowsWithIt(_ backend: Backend) async throws {
        try await Self.withState(backend) { store in
            let empty = Dictionary(uniqueKeysWithValues: try await store.storage.storage().map { ($0.name, $0) })
            #expect(empty["seen"]?.rows == 0)
            let alerts = try (0..<200).map {
                try makeAlert("a\($0)", "2025-03-14T10:00:00Z", extra: [("title", .string((0..<14).map { _ in UUID().uuidString }.joined()))])
            }
            _ = try await store.admission.admit(tenant: "t", alerts: alerts, forward: .new, sinks: ["x"])
            let full = Dictionary(uniqueKeysWithValues: try await store.storage.storage().map { ($0.name, $0) })
            #expect(full["seen"]?.rows == 200)
            #expect(full["cursor"]?.rows == 1)
            // Where the queued alerts' bytes are: the outbox log, or the outbox table.
            let queued = backend == .embedded ? "outbox log" : "outbox"
            #expect((full[queued]?.bytes ?? 0) > (empty[queued]?.bytes ?? 0) + 200 * 500)
            if backend == .postgresql { #expect(full["outbox_pending"]?.rows == 200) }
        }
    }
}

@Suite("State backends: embedded")
struct EmbeddedStateContractTests {
    @Test func admissionDedupsQueuesAndMovesTheWatermark() async throws {
        try await StateContract.admissionDedupsQueuesAndMovesTheWatermark(.embedded)
    }
    @Test func updatesAreLabelledAndAVersionTwiceInOnePageIsOneUpdate() async throws {
        try await StateContract.updatesAreLabelledAndAVersionTwiceInOnePageIsOneUpdate(.embedded)
    }
    @Test func eachSinkReadsInOrderWithTheHeadlineAndConfirmsOnce() async throws {
        try await StateContract.eachSinkReadsInOrderWithTheHeadlineAndConfirmsOnce(.embedded)
    }
    @Test func aHeadlineNotStoredIsReadFromThePayload() async throws { try await StateContract.aHeadlineNotStoredIsReadFromThePayload(.embedded) }
    @Test func sinksConfirmingTheSameAlertsAtOnceLeaveNothingBehind() async throws {
        try await StateContract.sinksConfirmingTheSameAlertsAtOnceLeaveNothingBehind(.embedded)
    }
    @Test func refusedRecordsBecomeDeadLettersThatCanBeSentAgain() async throws {
        try await StateContract.refusedRecordsBecomeDeadLettersThatCanBeSentAgain(.embedded)
    }
    @Test func quarantineKeepsAnElementOnceAndSchedulesSurvive() async throws {
        try await StateContract.quarantineKeepsAnElementOnceAndSchedulesSurvive(.embedded)
    }
    @Test func incidentsAreAStreamOfTheirOwnAndStayIncidents() async throws {
        try await StateContract.incidentsAreAStreamOfTheirOwnAndStayIncidents(.embedded)
    }
    @Test func oldDedupKeysArePrunedByTheEarlierOfBothClocks() async throws {
        try await StateContract.oldDedupKeysArePrunedByTheEarlierOfBothClocks(.embedded)
    }
    @Test func storageCountsWhatIsKeptAndGrowsWithIt() async throws { try await StateContract.storageCountsWhatIsKeptAndGrowsWithIt(.embedded) }
}

@Suite("State backends: PostgreSQL", .enabled(if: TestPostgres.isAvailable, TestPostgres.reason))
struct PostgresStateContractTests {
    @Test func admissionDedupsQueuesAndMovesTheWatermark() async throws {
        try await StateContract.admissionDedupsQueuesAndMovesTheWatermark(.postgresql)
    }
    @Test func updatesAreLabelledAndAVersionTwiceInOnePageIsOneUpdate() async throws {
        try await StateContract.updatesAreLabelledAndAVersionTwiceInOnePageIsOneUpdate(.postgresql)
    }
    @Test func eachSinkReadsInOrderWithTheHeadlineAndConfirmsOnce() async throws {
        try await StateContract.eachSinkReadsInOrderWithTheHeadlineAndConfirmsOnce(.postgresql)
    }
    @Test func aHeadlineNotStoredIsReadFromThePayload() async throws { try await StateContract.aHeadlineNotStoredIsReadFromThePayload(.postgresql) }
    @Test func sinksConfirmingTheSameAlertsAtOnceLeaveNothingBehind() async throws {
        try await StateContract.sinksConfirmingTheSameAlertsAtOnceLeaveNothingBehind(.postgresql)
    }
    @Test func refusedRecordsBecomeDeadLettersThatCanBeSentAgain() async throws {
        try await StateContract.refusedRecordsBecomeDeadLettersThatCanBeSentAgain(.postgresql)
    }
    @Test func quarantineKeepsAnElementOnceAndSchedulesSurvive() async throws {
        try await StateContract.quarantineKeepsAnElementOnceAndSchedulesSurvive(.postgresql)
    }
    @Test func incidentsAreAStreamOfTheirOwnAndStayIncidents() async throws {
        try await StateContract.incidentsAreAStreamOfTheirOwnAndStayIncidents(.postgresql)
    }
    @Test func oldDedupKeysArePrunedByTheEarlierOfBothClocks() async throws {
        try await StateContract.oldDedupKeysArePrunedByTheEarlierOfBothClocks(.postgresql)
    }
    @Test func storageCountsWhatIsKeptAndGrowsWithIt() async throws { try await StateContract.storageCountsWhatIsKeptAndGrowsWithIt(.postgresql) }
}
