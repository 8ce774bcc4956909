@testable import AlertForwarder
import Foundation
import OrderedJSON
import Testing
import TestSupport

@Suite("Sinks")
struct SinkTests {
    let directory = TemporaryDirectory()

    func record(_ id: Int64, event: String = "created") -> OutboxRecord {
        OutboxRecord(id: id, sink: "s", tenant: "contoso", alertID: "da\(id)", event: event, receivedAt: "2025-03-14T10:00:00Z",
                     payload: #"{"id":"da\#(id)","title":"T\#(id)","severity":"High","n":1.50,"x":null}"#)
    }

    @Test func fileSinkWritesJSONLinesWithModeAndRotation() async throws {
        let path = directory.file("out/alerts.jsonl")
        let sink = FileSink(path: path, format: .alert, maxSize: 200, maxFiles: 2)
        try await sink.send([record(1)])
        var info = stat()
        stat(path, &info)
        #expect(info.st_mode & 0o777 == 0o640)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == record(1).payload + "\n")
        for id in 2...8 { try await sink.send([record(Int64(id))]) }
        // Each line is ~70 bytes: rotated twice at least, and only two rotated files kept.
        #expect(FileManager.default.fileExists(atPath: path + ".1"))
        #expect(FileManager.default.fileExists(atPath: path + ".2"))
        #expect(!FileManager.default.fileExists(atPath: path + ".3"))
        let all = try [path + ".2", path + ".1", path].map { try String(contentsOfFile: $0, encoding: .utf8) }.joined()
        #expect(all.split(separator: "\n").last.map(String.init) == record(8).payload)
    }

    @Test func envelopeFormat() async throws {
        let path = directory.file("alerts.jsonl")
        try await FileSink(path: path, format: .envelope, maxSize: 0, maxFiles: 0).send([record(7, event: "updated")])
        let line = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .newlines)
        let value = try JSONValue(parsing: line)
        #expect(value.keys == ["tenant", "event", "received_at", "alert"])
        #expect(value["event"] == .string("updated"))
        #expect(value["alert"]?.serialized == record(7).payload)
    }

    @Test func reopenFollowsLogrotate() async throws {
        let path = directory.file("alerts.jsonl")
        let sink = FileSink(path: path, format: .alert, maxSize: 0, maxFiles: 0)
        try await sink.send([record(1)])
        try FileManager.default.moveItem(atPath: path, toPath: path + ".old")
        await sink.reopen()
        try await sink.send([record(2)])
        #expect(try String(contentsOfFile: path, encoding: .utf8) == record(2).payload + "\n")
    }

    @Test func aPartialLineFromACrashIsClosedFirst() async throws {
        let path = directory.write("alerts.jsonl", #"{"id":"half"#, mode: 0o640)
        try await FileSink(path: path, format: .alert, maxSize: 0, maxFiles: 0).send([record(3)])
        #expect(try String(contentsOfFile: path, encoding: .utf8) == record(3).payload + "\n")
    }

    @Test func aFullDiskIsASinkErrorNotACrash() async throws {
        let sink = FileSink(path: "/dev/full", format: .alert, maxSize: 0, maxFiles: 0)
        await #expect(throws: SinkError.self) { try await sink.send([self.record(1)]) }
        let denied = FileSink(path: "/proc/version/alerts.jsonl", format: .alert, maxSize: 0, maxFiles: 0)
        await #expect(throws: SinkError.self) { try await denied.send([self.record(1)]) }
    }

    @Test func journalPriorities() {
        #expect(JournalSink.priority(for: "High") == 2)
        #expect(JournalSink.priority(for: "medium") == 3)
        #expect(JournalSink.priority(for: "Low") == 4)
        #expect(JournalSink.priority(for: "Informational") == 5)
        #expect(JournalSink.priority(for: "SomethingNew") == 6)
    }

    @Test func journalSinkWritesOneEntryPerAlert() async throws {
        try #require(Journal.isListening(), "no journald: run through make test")
        let tenant = "tenant-\(UUID().uuidString.prefix(8))"
        var first = record(11)
        first.tenant = tenant
        first.payload = #"{"id":"da11","title":"Suspicious access","severity":"High","status":"New","computerDnsName":"ws-1","text":"a\nb"}"#
        var second = record(12)
        second.tenant = tenant
        try await JournalSink().send([first, second])
        let entries = try Journal.entries(matching: "DEFENDER_TENANT=\(tenant)", expected: 2)
        #expect(entries.count == 2)
        let entry = try #require(entries.first { $0["DEFENDER_ALERT_ID"] == "da11" })
        #expect(entry["MESSAGE"] == "[High] Suspicious access on ws-1 (da11)")
        #expect(entry["PRIORITY"] == "2")
        #expect(entry["MESSAGE_ID"] == JournalSink.messageID)
        #expect(entry["DEFENDER_SEVERITY"] == "High")
        #expect(entry["DEFENDER_STATUS"] == "New")
        #expect(entry["DEFENDER_EVENT"] == "created")
        #expect(entry["DEFENDER_ALERT_JSON"] == first.payload)
    }
}
