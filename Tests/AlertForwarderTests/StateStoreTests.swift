import DefenderAPI
import Foundation
import OrderedJSON
import TestSupport
import Testing
import Timekeeping

@testable import AlertForwarder

func makeAlert(_ id: String, _ updated: String, extra: [(String, JSONValue)] = []) throws -> Alert {
    try Alert(json: JSONValue.object([("id", .string(id)), ("lastUpdateTime", .string(updated)), ("severity", .string("High"))] + extra).serialized)
}

/// A Graph incident, as `security/incidents` lists it (its few members that matter here).
func makeIncident(_ id: String, _ updated: String) throws -> Alert {
    try Alert(
        json: JSONValue.object([
            ("id", .string(id)), ("displayName", .string("Multi-stage incident")), ("lastUpdateDateTime", .string(updated)),
            ("severity", .string("high")), ("status", .string("active")),
        ]).serialized,
        api: .graph, kind: .incident)
}

@Suite("State store")
struct StateStoreTests {
    let directory = TemporaryDirectory()

    @Test func aSecondOwnerIsRefusedWithAClearMessage() async throws {
        var first: StateStore? = try StateStore.embedded(directory: directory.file("state"))
        #expect(first != nil)
        let refused = #expect(throws: StateError.self) { try StateStore.embedded(directory: directory.file("state")) }
        #expect(refused?.description.contains("another process (a running defender-alertd, or poll-once) is using the state directory") == true)
        // Inspectors (the state commands) may look while the owner runs.
        _ = try StateStore.embedded(directory: directory.file("state"), access: .inspector)
        first = nil
        _ = try StateStore.embedded(directory: directory.file("state"))
    }

    @Test func anInspectorNeverCutsTheLogTheOwnerIsAppendingTo() async throws {
        // Found end to end: `state show` while the daemon ran cut the outbox segment back to
        // the end committed a moment before, under an append; the daemon's next start refused
        // the log ("holds 0 bytes, fewer than the 9016 committed") and the alerts were lost.
        let owner = try StateStore.embedded(directory: directory.file("state"))
        _ = try await owner.admission.admit(tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["x"])
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: directory.file("state/outbox")).first { $0.hasSuffix(".log") })
        let path = directory.file("state/outbox/" + segment)
        // An append on its way: its bytes are written, its commit not yet made.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(repeating: 0x41, count: 4096))
        try handle.close()
        let size = { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1 }
        let before = size()
        let inspector = try StateStore.embedded(directory: directory.file("state"), access: .inspector)
        #expect(size() == before, "an inspector cut the log")
        #expect(try await inspector.outbox.depth() == ["x": 1])
        #expect(try await inspector.outbox.pending(sink: "x", limit: 10).records.map(\.alertID) == ["a"])
    }

    @Test func admissionDedupsEnqueuesAndMovesTheWatermark() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        var info = stat()
        stat(directory.file("state"), &info)
        #expect(info.st_mode & 0o777 == 0o700)
        #expect(try await store.admission.watermark(tenant: "t") == nil)

        let first = try await store.admission.admit(
            tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z"), try makeAlert("b", "2025-03-14T10:00:05.5Z")],
            forward: .new, sinks: ["x", "y"])
        #expect(first.newAlerts == 2 && first.duplicates == 0 && first.queuedForSinks == 4)
        #expect(first.admitted.map(\.id) == ["a", "b"])
        #expect(try await store.admission.watermark(tenant: "t") == Timestamp(parsing: "2025-03-14T10:00:05.5Z"))

        // The same alerts again (overlap), one updated: "new" mode forwards nothing.
        let second = try await store.admission.admit(
            tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:01:00Z"), try makeAlert("b", "2025-03-14T10:00:05.5Z")],
            forward: .new, sinks: ["x", "y"])
        #expect(second == Admission(newAlerts: 0, duplicates: 2, queuedForSinks: 0))
        #expect(second.admitted.isEmpty)
        #expect(try await store.admission.watermark(tenant: "t") == Timestamp(parsing: "2025-03-14T10:01:00Z"))

        // An older page never moves the watermark back.
        _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("c", "2025-03-14T09:00:00Z")], forward: .new, sinks: ["x"])
        #expect(try await store.admission.watermark(tenant: "t") == Timestamp(parsing: "2025-03-14T10:01:00Z"))
        #expect(try await store.outbox.depth() == ["x": 3, "y": 2])
    }

    @Test func updatesModeLabelsCreatedAndUpdated() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z")], forward: .updates, sinks: ["x"])
        _ = try await store.admission.admit(
            tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z"), try makeAlert("a", "2025-03-14T10:05:00Z")], forward: .updates,
            sinks: ["x"])
        _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:09:00Z")], forward: .updates, sinks: ["x"])
        let records = try await store.outbox.pending(sink: "x", limit: 10).records
        #expect(records.map(\.event) == ["created", "updated", "updated"])
        #expect(records.map(\.alertID) == ["a", "a", "a"])
    }

    @Test func onlyTheSameAlertCountsAsAnEarlierVersion() async throws {
        // Ids that start with another id ("ab", "a0", "a|b") are other alerts; a key remembered
        // while forward was "new" is an earlier version of the same alert.
        let store = try StateStore.embedded(directory: directory.file("state"))
        _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("a|b", "2025-03-14T10:00:00Z")], forward: .updates, sinks: ["x"])
        _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z")], forward: .updates, sinks: ["x"])
        _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("c", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["x"])
        let alerts = try ["ab", "a0", "cd"].map { try makeAlert($0, "2025-03-14T10:01:00Z") }
        _ = try await store.admission.admit(tenant: "t", alerts: alerts, forward: .updates, sinks: ["x"])
        let later = try ["a", "c", "a|b"].map { try makeAlert($0, "2025-03-14T10:02:00Z") }
        _ = try await store.admission.admit(tenant: "t", alerts: later, forward: .updates, sinks: ["x"])
        let records = try await store.outbox.pending(sink: "x", limit: 20).records
        #expect(records.map(\.alertID) == ["a|b", "a", "c", "ab", "a0", "cd", "a", "c", "a|b"])
        #expect(records.map(\.event) == ["created", "created", "created", "created", "created", "created", "updated", "updated", "updated"])
    }

    @Test func outboxIsReadInOrderAndConfirmedRowsGo() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        let raw = JSONValue.object([("id", .string("a")), ("lastUpdateTime", .string("2025-03-14T10:00:00Z")), ("n", .number("1.50")), ("u", .null)])
        let alerts = try [try Alert(json: raw.serialized)] + (1...5).map { try makeAlert("a\($0)", "2025-03-14T10:00:0\($0)Z") }
        _ = try await store.admission.admit(tenant: "t", alerts: alerts, forward: .new, sinks: ["x"])
        let batch = try await store.outbox.pending(sink: "x", limit: 4)
        #expect(batch.records.count == 4)
        #expect(batch.records[0].payload == raw.serialized)
        try await store.outbox.confirm(batch)
        try await store.outbox.confirm(batch)  // a second confirmation of the same batch changes nothing
        #expect(try await store.outbox.depth() == ["x": 2])
        #expect(try await store.outbox.pending(sink: "x", limit: 10).records.map(\.alertID) == ["a4", "a5"])
        #expect(try await store.outbox.drop(except: ["y"]) == 2)
        #expect(try await store.outbox.depth().isEmpty)
    }

    @Test func stateSurvivesReopeningAndResetForgetsATenant() async throws {
        do {
            let store = try StateStore.embedded(directory: directory.file("state"))
            _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["x"])
            _ = try await store.admission.admit(tenant: "u", alerts: [try makeAlert("b", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["x"])
        }
        let store = try StateStore.embedded(directory: directory.file("state"))
        #expect(try await store.admission.watermark(tenant: "t") != nil)
        #expect(try await store.outbox.pending(sink: "x", limit: 10).records.count == 2)
        try await store.admission.reset(tenant: "t")
        #expect(try await store.admission.watermark(tenant: "t") == nil)
        #expect(try await store.admission.tenants().map(\.tenant) == ["u"])
        #expect(
            try await store.admission.admit(tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["x"]).newAlerts
                == 1)
    }

    @Test func oldDedupKeysArePruned() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        let now = Date()
        let old = now.addingTimeInterval(-200 * 86_400)
        _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("a", Timestamp(old).description)], forward: .new, sinks: [], now: old)
        _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("b", Timestamp(now).description)], forward: .new, sinks: [], now: now)
        #expect(try await store.admission.pruneDedupKeys(now: now) == 1)
        #expect(try await store.admission.tenants().first?.dedupKeys == 1)
    }

    /// A local clock 200 days ahead at one start pruned every key, and the next poll delivered
    /// the alerts of the overlap again (issue 11, hole 19). Age counts from the newest alert.
    @Test func aClockFarAheadDoesNotPruneKeysStillNeeded() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        let now = Date()
        let tenDaysAgo = now.addingTimeInterval(-10 * 86_400)
        let a = try makeAlert("a", Timestamp(tenDaysAgo).description)
        _ = try await store.admission.admit(tenant: "t", alerts: [a], forward: .new, sinks: ["x"], now: tenDaysAgo)
        _ = try await store.admission.admit(
            tenant: "t", alerts: [try makeAlert("b", Timestamp(now).description)], forward: .new, sinks: ["x"], now: now)
        #expect(try await store.admission.pruneDedupKeys(now: now.addingTimeInterval(200 * 86_400)) == 0)
        #expect(try await store.admission.tenants().first?.dedupKeys == 2)
        #expect(try await store.admission.admit(tenant: "t", alerts: [a], forward: .new, sinks: ["x"]).newAlerts == 0)
    }

    @Test func aCorruptDatabaseStopsWithAClearMessage() async throws {
        let path = directory.file("state")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        directory.write("state/state.sqlite", String(repeating: "this is not a database ", count: 500))
        do {
            _ = try StateStore.embedded(directory: path)
            Issue.record("a corrupt database was accepted")
        } catch {
            #expect(error.description.contains(path + "/state.sqlite"))
            #expect(error.description.contains("never reset automatically") || error.description.contains("damaged"))
        }
        // The file is left as it was, for a person to look at.
        #expect(try String(contentsOfFile: path + "/state.sqlite", encoding: .utf8).hasPrefix("this is not a database"))
    }

    /// /proc takes no new directory, not even from root (CI runs as root).
    @Test func anUnwritableDirectoryIsAClearError() async throws {
        #expect {
            try StateStore.embedded(directory: "/proc/defender-alertd-state")
        } throws: { error in
            (error as? StateError)?.description.contains("/proc/defender-alertd-state") == true
        }
    }
}

@Suite("Quarantine")
struct QuarantineTests {
    @Test func anElementIsKeptOnceWithItsBytes() async throws {
        let directory = TemporaryDirectory()
        let store = try StateStore.embedded(directory: directory.file("state"))
        let bad = RejectedElement(bytes: Data([0x7B, 0xFF, 0x7D]), reason: "an element of value is not valid JSON: invalid UTF-8 in a string")
        let other = RejectedElement(bytes: Data(#"{"id":7}"#.utf8), reason: "an alert has no string id")
        let first = try await store.admission.admit(tenant: "contoso", alerts: [], rejected: [bad, other], forward: .new, sinks: ["s"])
        #expect(first.quarantined == [bad, other])
        // The same element re-read by the next poll (the overlap) is not kept or reported again.
        let again = try await store.admission.admit(tenant: "contoso", alerts: [], rejected: [bad], forward: .new, sinks: ["s"])
        #expect(again.quarantined.isEmpty)
        // Another tenant's copy is its own.
        #expect(try await store.admission.admit(tenant: "fabrikam", alerts: [], rejected: [bad], forward: .new, sinks: ["s"]).quarantined == [bad])
        #expect(try await store.quarantine.counts() == ["contoso": 2, "fabrikam": 1])
        let kept = try await store.quarantine.elements(tenant: "contoso")
        #expect(kept.map(\.bytes) == [bad.bytes, other.bytes])
        #expect(kept.map(\.reason) == [bad.reason, other.reason])
        #expect(try await store.admission.watermark(tenant: "contoso") == nil, "no alert, no watermark")
        #expect(try await store.quarantine.purge(tenant: "contoso") == 2)
        #expect(try await store.quarantine.counts() == ["fabrikam": 1])
    }
}
