import DefenderAPI
import Dispatch
import Foundation
import GRDB
import Synchronization
import TestSupport
import Testing

@testable import AlertForwarder

/// The state's parts: what kind of failure each error is, work kept off the cooperative pool,
/// and the headline each sink shows.
@Suite("State parts")
struct StateKindsTests {
    let directory = TemporaryDirectory()
    var state: String { directory.file("state") }

    @Test func eachFailureSaysWhatKindItIs() async throws {
        // A second owner: in use.
        let owner = try StateStore.embedded(directory: state)
        let inUse = #expect(throws: StateError.self) { try StateStore.embedded(directory: state) }
        #expect(inUse?.kind == .inUse)
        #expect(inUse?.isTransient == false)
        _ = try await owner.admission.admit(tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["x"])
        // A record damaged on disk: corrupt, not something to wait for.
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: state + "/outbox").first)
        let url = URL(fileURLWithPath: state + "/outbox/" + segment)
        var bytes = try Data(contentsOf: url)
        bytes[5] ^= 0xff
        try bytes.write(to: url)
        let damaged = await #expect(throws: StateError.self) { _ = try await owner.outbox.pending(sink: "x", limit: 10) }
        #expect(damaged?.kind == .corrupt)
        // Not a database at all: corrupt.
        let other = directory.file("other")
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        directory.write("other/state.sqlite", String(repeating: "this is not a database ", count: 500))
        let notADatabase = #expect(throws: StateError.self) { try StateStore.embedded(directory: other) }
        #expect(notADatabase?.kind == .corrupt)
        // The failed open let go of the directory's lock: a second try says the same.
        let again = #expect(throws: StateError.self) { try StateStore.embedded(directory: other) }
        #expect(again?.kind == .corrupt)
        // No space left, from a system call or from SQLite: full, which waiting may end.
        #expect(StateError.system("cannot write", errno: ENOSPC).kind == .full)
        #expect(StateError.system("cannot write", errno: EIO).kind == .unavailable)
        #expect(EmbeddedDatabase.stateError(DatabaseError(resultCode: .SQLITE_FULL), doing: "write").kind == .full)
        #expect(EmbeddedDatabase.stateError(DatabaseError(resultCode: .SQLITE_BUSY), doing: "write").kind == .unavailable)
        #expect(EmbeddedDatabase.stateError(DatabaseError(resultCode: .SQLITE_CORRUPT), doing: "read").isTransient == false)
    }

    @Test func aDatabaseOfANewerVersionIsRefusedByName() async throws {
        _ = try StateStore.embedded(directory: state)
        let database = try DatabaseQueue(path: state + "/state.sqlite")
        try await database.write { db in try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99-from-the-future')") }
        do {
            _ = try StateStore.embedded(directory: state)
            Issue.record("a newer schema was used")
        } catch {
            #expect(error.kind == .incompatible)
            #expect(error.description.contains("v99-from-the-future"), "\(error)")
            #expect(error.description.contains("newer version of defender-alertd"), "\(error)")
        }
    }

    /// The daemon's first start and `state show` opening the same new state at once: both
    /// migrated the schema, and the second failed ("UNIQUE constraint failed:
    /// grdb_migrations.identifier"; the daemon ended, as make bench-smoke saw). An owner and an
    /// inspector open a new state side by side, again and again: each opens.
    @Test func anOwnerAndAnInspectorOpeningANewStateAtOnceBothOpen() throws {
        for round in 0..<20 {
            let directory = self.directory.file("race-\(round)")
            let failures = Mutex<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 2) { index in
                do {
                    _ = try EmbeddedDatabase(directory: directory, segmentSize: 64 << 20, access: index == 0 ? .owner : .inspector)
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
            let failed = failures.withLock { $0 }
            #expect(failed.isEmpty, "round \(round): \(failed)")
        }
    }

    @Test func stateWorkRunsOffTheCooperativePool() async throws {
        let database = try EmbeddedDatabase(directory: state, segmentSize: 64 << 20, access: .owner)
        #expect(!Blocking.onBlockingThread)
        #expect(try await database.blocking { () throws(StateError) in Blocking.onBlockingThread })

    }

    /// A stop (the task cancelled) during a sink's confirmation must not drop it: the alerts
    /// would be sent again at the next start.
    @Test func aConfirmationIsNotAbandonedWhenItsTaskIsCancelled() async throws {
        let store = try StateStore.embedded(directory: state)
        _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["x"])
        let batch = try await store.outbox.pending(sink: "x", limit: 10)
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await store.outbox.confirm(batch)
        }
        try await task.value
        #expect(try await store.outbox.depth() == [:])
        #expect(try await store.outbox.pending(sink: "x", limit: 10).records.isEmpty)
    }

    @Test func theHeadlineIsDecodedAtAdmissionAndStoredWithTheRecord() async throws {
        let store = try StateStore.embedded(directory: state)
        let alert = try makeAlert(
            "a", "2025-03-14T10:00:00Z",
            extra: [
                ("title", .string("Suspicious LSASS access")), ("computerDnsName", .string("ws-1")),
                ("status", .string("New")),
            ])
        _ = try await store.admission.admit(tenant: "t", alerts: [alert], forward: .new, sinks: ["x"])
        // The bytes of the alert in the log change after admission: the stored headline is
        // what is read, not the payload again.
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: state + "/outbox").first)
        let url = URL(fileURLWithPath: state + "/outbox/" + segment)
        let bytes = try Data(contentsOf: url)
        let changed = Data(
            String(decoding: bytes, as: UTF8.self).replacingOccurrences(
                of: "\"title\":\"Suspicious LSASS access\"", with: "\"title\":\"Suspicious LSASS accesX\""
            ).utf8)
        #expect(changed.count == bytes.count)
        try changed.write(to: url)
        let record = try #require(try await store.outbox.pending(sink: "x", limit: 1).records.first)
        #expect(record.headline.title == "Suspicious LSASS access")
        #expect(record.headline.severity == "High")
        #expect(record.headline.host == "ws-1")
        #expect(record.headline.status == "New")
        #expect(record.headline.lastUpdateTime == "2025-03-14T10:00:00Z")
        #expect(record.payload.contains("accesX"))
    }

    @Test func aRecordWithoutAStoredHeadlineHasItReadFromItsBytes() throws {
        let log = try OutboxLog(directory: directory.file("outbox"))
        let payload = Data(#"{"id":"a","lastUpdateTime":"2025-03-14T10:00:00Z","severity":"Low","title":"Old record"}"#.utf8)
        let end = try log.append(
            [
                OutboxLog.Entry(
                    tenant: "t", alertID: "a", event: "updated", receivedAt: "2025-03-14T10:00:01Z", headline: nil,
                    payload: payload, sinks: ["x"])
            ], after: OutboxLog.first)
        let (records, _) = try log.read(sink: "x", from: OutboxLog.first, to: end, limit: 10)
        let record = try #require(records.first)
        #expect(record.event == "updated")
        #expect(record.headline.title == "Old record")
        #expect(record.headline.severity == "Low")
        #expect(record.payloadBytes == [UInt8](payload))
    }

    @Test func noSinkShowsTheHeadlineSoNoneIsStoredAndOneIsReadFromThePayloadIfAsked() async throws {
        let store = try StateStore.embedded(directory: state)
        let alert = try makeAlert(
            "a", "2025-03-14T10:00:00Z", extra: [("title", .string("Suspicious LSASS access")), ("computerDnsName", .string("ws-1"))])
        _ = try await store.admission.admit(tenant: "t", alerts: [alert], forward: .new, sinks: ["x"], storesHeadline: false)
        // Nothing but the alert's bytes: its title is in the log once.
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: state + "/outbox").first)
        let stored = try String(decoding: Data(contentsOf: URL(fileURLWithPath: state + "/outbox/" + segment)), as: UTF8.self)
        #expect(stored.components(separatedBy: "Suspicious LSASS access").count == 2)
        let record = try #require(try await store.outbox.pending(sink: "x", limit: 1).records.first)
        #expect(record.headline == AlertHeadline(alert))
        #expect(record.headline.host == "ws-1")
        // A payload changed is a headline changed.
        var changed = record
        changed.payload = record.payload.replacingOccurrences(of: "Suspicious LSASS access", with: "Changed")
        #expect(changed.headline.title == "Changed")
    }

    @Test func sinksThatShowTheHeadline() {
        func sink(_ kind: SinkConfiguration.Kind) -> SinkConfiguration { SinkConfiguration(name: "s", kind: kind) }
        #expect(sink(.journal).showsHeadline)
        #expect(sink(.stdout(format: .summary)).showsHeadline)
        #expect(!sink(.stdout(format: .alert)).showsHeadline)
        #expect(!sink(.file(path: "/x", format: .envelope, maxSize: 0, maxFiles: 1)).showsHeadline)
        #expect(sink(.file(path: "/x", format: .summary, maxSize: 0, maxFiles: 1)).showsHeadline)
    }
}
