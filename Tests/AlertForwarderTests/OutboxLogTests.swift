import DefenderAPI
import Foundation
import GRDB
import TestSupport
import Testing

@testable import AlertForwarder

@Suite("Outbox log")
struct OutboxLogTests {
    let directory = TemporaryDirectory()
    var state: String { directory.file("state") }

    func segments() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: state + "/outbox").sorted()
    }

    func segmentPath(_ number: Int) -> String {
        state + "/outbox/" + String(repeating: "0", count: 20 - String(number).count) + "\(number).log"
    }

    /// Alerts a and b admitted for sink x by a store that is then closed.
    func admitTwoAlertsAndClose() async throws {
        let store = try StateStore.embedded(directory: state)
        _ = try await store.admission.admit(
            tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z"), try makeAlert("b", "2025-03-14T10:00:01Z")],
            forward: .new, sinks: ["x"])
    }

    @Test func eachAlertIsWrittenOnceAndEachSinkReadsItsOwn() async throws {
        let store = try StateStore.embedded(directory: state)
        let a = try makeAlert("a", "2025-03-14T10:00:00Z"), b = try makeAlert("b", "2025-03-14T10:00:01Z")
        _ = try await store.admission.admit(tenant: "t", alerts: [a], forward: .new, sinks: ["x", "y"])
        _ = try await store.admission.admit(tenant: "u", alerts: [b], forward: .new, sinks: ["y"])
        #expect(try await store.outbox.pending(sink: "x", limit: 10).records.map(\.alertID) == ["a"])
        #expect(try await store.outbox.pending(sink: "y", limit: 10).records.map(\.alertID) == ["a", "b"])
        #expect(try await store.outbox.pending(sink: "y", limit: 10).records.map(\.tenant) == ["t", "u"])
        #expect(try await store.outbox.depth() == ["x": 1, "y": 2])
        // One copy of each alert on disk, whatever the number of sinks.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: segmentPath(1)))
        #expect(bytes.count < a.json.utf8.count + b.json.utf8.count + 200)
        #expect(try segments() == [URL(fileURLWithPath: segmentPath(1)).lastPathComponent])
    }

    @Test func aBatchLargerThanOneWriteIsWrittenWholeAndInOrder() async throws {
        // About 3 MB in one admission: encoded and written a megabyte at a time.
        let store = try StateStore.embedded(directory: state)
        let alerts = try (0..<1000).map { index in
            try makeAlert("big\(index)", "2025-03-14T10:00:00Z", extra: [("pad", .string(String(repeating: "é\(index % 10)", count: 1000)))])
        }
        _ = try await store.admission.admit(tenant: "t", alerts: alerts, forward: .new, sinks: ["x"])
        var read: [OutboxRecord] = []
        while true {
            let batch = try await store.outbox.pending(sink: "x", limit: 300)
            if batch.records.isEmpty { break }
            read += batch.records
            try await store.outbox.confirm(batch)
        }
        #expect(read.map(\.alertID) == alerts.map(\.id))
        #expect(read.map { Data($0.payloadBytes) } == alerts.map(\.bytes))
        #expect(read.map(\.id) == Array(read[0].id..<read[0].id + 1000))
    }

    @Test func aSinkNamedTwiceCountsAnAlertOnce() async throws {
        let store = try StateStore.embedded(directory: state)
        _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["x", "x"])
        #expect(try await store.outbox.depth() == ["x": 1])
        let batch = try await store.outbox.pending(sink: "x", limit: 10)
        #expect(batch.records.map(\.alertID) == ["a"])
        try await store.outbox.confirm(batch)
        #expect(try await store.outbox.depth().isEmpty)
    }

    @Test func aSinkPassesOverAlertsThatAreNotForIt() async throws {
        let store = try StateStore.embedded(directory: state)
        _ = try await store.admission.admit(
            tenant: "t", alerts: [try makeAlert("first", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["rare", "busy"])
        let many = try (0..<3000).map {
            try makeAlert("n\($0)", "2025-03-14T10:00:01Z", extra: [("pad", .string(String(repeating: "p", count: 2000)))])
        }
        _ = try await store.admission.admit(tenant: "t", alerts: many, forward: .new, sinks: ["busy"])
        _ = try await store.admission.admit(
            tenant: "t", alerts: [try makeAlert("last", "2025-03-14T10:00:02Z")], forward: .new, sinks: ["rare", "busy"])
        // About 6 MB of alerts for another sink in between: a read stops after a bounded chunk
        // and moves on; draining gets the two alerts, and only them.
        var delivered: [String] = []
        var reads = 0
        while true {
            let batch = try await store.outbox.pending(sink: "rare", limit: 10)
            guard batch.advances else { break }
            delivered += batch.records.map(\.alertID)
            try await store.outbox.confirm(batch)
            reads += 1
        }
        #expect(delivered == ["first", "last"])
        #expect(reads >= 2)
        #expect(try await store.outbox.depth()["rare"] == nil)
        #expect(try await store.outbox.depth()["busy"] == 3002)
    }

    @Test func bytesAppendedButNeverCommittedAreCutOffWhenTheLogIsOpened() async throws {
        try await admitTwoAlertsAndClose()
        let committed = try Data(contentsOf: URL(fileURLWithPath: segmentPath(1)))
        // A crash between the append and the commit leaves a tail (here: half a record and an
        // orphan next segment).
        let handle = try #require(FileHandle(forWritingAtPath: segmentPath(1)))
        handle.seekToEndOfFile()
        handle.write(committed.prefix(committed.count / 2 + 7))
        handle.closeFile()
        #expect(FileManager.default.createFile(atPath: segmentPath(3), contents: Data("orphan".utf8)))

        let store = try StateStore.embedded(directory: state)
        #expect(try Data(contentsOf: URL(fileURLWithPath: segmentPath(1))) == committed)
        #expect(!FileManager.default.fileExists(atPath: segmentPath(3)))
        _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("c", "2025-03-14T10:00:02Z")], forward: .new, sinks: ["x"])
        #expect(try await store.outbox.pending(sink: "x", limit: 10).records.map(\.alertID) == ["a", "b", "c"])
    }

    @Test func segmentsRollOverAndGoOnceEverySinkIsPastThem() async throws {
        let store = try StateStore.embedded(directory: state, segmentSize: 1)  // a new segment at every append
        for index in 1...6 {
            _ = try await store.admission.admit(
                tenant: "t", alerts: [try makeAlert("a\(index)", "2025-03-14T10:00:0\(index)Z")], forward: .new, sinks: ["fast", "slow"])
        }
        #expect(try segments().count == 6)
        var fast: [String] = []
        for _ in 0..<3 {
            let batch = try await store.outbox.pending(sink: "fast", limit: 2)
            fast += batch.records.map(\.alertID)
            try await store.outbox.confirm(batch)
        }
        #expect(fast == ["a1", "a2", "a3", "a4", "a5", "a6"])
        #expect(try segments().count == 6, "a segment the slow sink still needs was deleted")
        let slow = try await store.outbox.pending(sink: "slow", limit: 4)
        #expect(slow.records.map(\.alertID) == ["a1", "a2", "a3", "a4"])
        try await store.outbox.confirm(slow)
        #expect(try segments().count == 2)
        #expect(try await store.outbox.pending(sink: "slow", limit: 10).records.map(\.alertID) == ["a5", "a6"])
        // A sink that is no longer configured holds nothing back.
        #expect(try await store.outbox.drop(except: ["fast"]) == 2)
        #expect(try segments().count == 1)
        #expect(try await store.outbox.depth().isEmpty)
    }

    @Test func aFailedAppendAdmitsNothingAndLosesNothing() async throws {
        let store = try StateStore.embedded(directory: state, segmentSize: 1)
        _ = try await store.admission.admit(tenant: "t", alerts: [try makeAlert("a", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["x"])
        let watermark = try await store.admission.watermark(tenant: "t")
        // The next segment cannot be created (its name is taken by a directory).
        try FileManager.default.createDirectory(atPath: segmentPath(2), withIntermediateDirectories: false)
        await #expect(throws: StateError.self) {
            try await store.admission.admit(tenant: "t", alerts: [try makeAlert("b", "2025-03-14T10:00:01Z")], forward: .new, sinks: ["x"])
        }
        #expect(try await store.admission.watermark(tenant: "t") == watermark)
        #expect(try await store.outbox.depth() == ["x": 1])
        try FileManager.default.removeItem(atPath: segmentPath(2))
        // The same page again: b is new (its dedup key was rolled back with the transaction).
        #expect(
            try await store.admission.admit(tenant: "t", alerts: [try makeAlert("b", "2025-03-14T10:00:01Z")], forward: .new, sinks: ["x"]).newAlerts
                == 1)
        #expect(try await store.outbox.pending(sink: "x", limit: 10).records.map(\.alertID) == ["a", "b"])
    }

    @Test func aDamagedLogIsAClearError() async throws {
        try await admitTwoAlertsAndClose()
        var bytes = try Data(contentsOf: URL(fileURLWithPath: segmentPath(1)))
        bytes[5] ^= 0xff  // the first record's sequence number
        try bytes.write(to: URL(fileURLWithPath: segmentPath(1)))
        do {
            let store = try StateStore.embedded(directory: state)
            _ = try await store.outbox.pending(sink: "x", limit: 10)
            Issue.record("a damaged record was read")
        } catch {
            #expect(error.description.contains("sequence"), "\(error)")
        }
        // Shorter than what was committed: refused when opening, naming the file.
        try bytes.prefix(10).write(to: URL(fileURLWithPath: segmentPath(1)))
        do {
            _ = try StateStore.embedded(directory: state)
            Issue.record("a segment shorter than committed was accepted")
        } catch {
            #expect(error.description.contains(segmentPath(1)), "\(error)")
        }
    }

    @Test func theOutboxTableOfTheFormerFormatMovesIntoTheLog() async throws {
        // A database as the previous version left it: alerts a, b for sinks x and y, x has
        // delivered a; c for y only.
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let queue = try DatabaseQueue(path: state + "/state.sqlite")
        try await queue.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                    INSERT INTO grdb_migrations VALUES ('v1');
                    CREATE TABLE cursor (tenant TEXT PRIMARY KEY NOT NULL, watermark INTEGER NOT NULL, watermark_text TEXT NOT NULL, updated_at TEXT NOT NULL);
                    CREATE TABLE seen (tenant TEXT NOT NULL, key TEXT NOT NULL, alert_id TEXT NOT NULL, recorded_at INTEGER NOT NULL,
                                       PRIMARY KEY (tenant, key)) WITHOUT ROWID;
                    CREATE INDEX seen_by_alert ON seen (tenant, alert_id);
                    CREATE INDEX seen_by_age ON seen (recorded_at);
                    CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, tenant TEXT NOT NULL, alert_id TEXT NOT NULL,
                                         event TEXT NOT NULL, received_at TEXT NOT NULL, payload TEXT NOT NULL);
                    CREATE INDEX outbox_by_sink ON outbox (sink, id);
                    INSERT INTO outbox (id, sink, tenant, alert_id, event, received_at, payload) VALUES
                        (2, 'y', 't', 'a', 'created', '2025-03-14T10:00:00Z', '{"id":"a"}'),
                        (3, 'x', 't', 'b', 'updated', '2025-03-14T10:00:00Z', '{"id":"b","n":1.50}'),
                        (4, 'y', 't', 'b', 'updated', '2025-03-14T10:00:00Z', '{"id":"b","n":1.50}'),
                        (5, 'y', 'u', 'c', 'created', '2025-03-14T10:00:01Z', '{"id":"c","é":"ü"}');
                    """)
        }
        try queue.close()
        let store = try StateStore.embedded(directory: state)
        #expect(try await store.outbox.depth() == ["x": 1, "y": 3])
        let x = try await store.outbox.pending(sink: "x", limit: 10).records
        #expect(x.map(\.alertID) == ["b"])
        #expect(x.first?.event == "updated")
        #expect(x.first?.payload == #"{"id":"b","n":1.50}"#)
        let y = try await store.outbox.pending(sink: "y", limit: 10).records
        #expect(y.map(\.alertID) == ["a", "b", "c"])
        #expect(y.map(\.tenant) == ["t", "t", "u"])
        #expect(y.last?.payload == #"{"id":"c","é":"ü"}"#)
        #expect(y.last?.receivedAt == "2025-03-14T10:00:01Z")
        let (outboxTable, indexes) = try await DatabaseQueue(path: state + "/state.sqlite").read { db in
            (try db.tableExists("outbox"), try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'seen'"))
        }
        #expect(!outboxTable)
        // Dedup keys are reached through the primary key only (migration v3).
        #expect(indexes.allSatisfy { $0.hasPrefix("sqlite_autoindex") }, "\(indexes)")
    }
}
