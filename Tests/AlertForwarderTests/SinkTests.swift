import DefenderAPI
import Foundation
import OrderedJSON
import Synchronization
import TestSupport
import Testing

@testable import AlertForwarder

@Suite("Sinks")
struct SinkTests {
    let directory = TemporaryDirectory()

    func record(_ id: Int64, event: String = "created") -> OutboxRecord {
        OutboxRecord(
            id: id, sink: "s", tenant: "contoso", alertID: "da\(id)", event: event, receivedAt: "2025-03-14T10:00:00Z",
            payload: #"{"id":"da\#(id)","title":"T\#(id)","severity":"High","n":1.50,"x":null}"#)
    }

    @Test func fileSinkWritesJSONLinesWithModeAndRotation() async throws {
        let path = directory.file("out/alerts.jsonl")
        let sink = FileSink(path: path, layout: RecordLine(format: .alert), maxSize: 200, maxFiles: 2)
        #expect(try await sink.send([record(1)]).isEmpty)
        var info = stat()
        stat(path, &info)
        #expect(info.st_mode & 0o777 == 0o640)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == record(1).payload + "\n")
        for id in 2...8 { #expect(try await sink.send([record(Int64(id))]).isEmpty) }
        // Each line is ~70 bytes: rotated twice at least, and only two rotated files kept.
        #expect(FileManager.default.fileExists(atPath: path + ".1"))
        #expect(FileManager.default.fileExists(atPath: path + ".2"))
        #expect(!FileManager.default.fileExists(atPath: path + ".3"))
        let all = try [path + ".2", path + ".1", path].map { try String(contentsOfFile: $0, encoding: .utf8) }.joined()
        #expect(all.split(separator: "\n").last.map(String.init) == record(8).payload)
    }

    @Test func envelopeFormat() async throws {
        let path = directory.file("alerts.jsonl")
        #expect(
            try await FileSink(path: path, layout: RecordLine(format: .envelope), maxSize: 0, maxFiles: 0).send([record(7, event: "updated")]).isEmpty
        )
        let line = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .newlines)
        let value = try JSONValue(parsing: line)
        #expect(value.keys == ["tenant", "kind", "event", "received_at", "alert"])
        #expect(value["kind"] == .string("alert") && value["event"] == .string("updated"))
        #expect(value["alert"]?.serialized == record(7).payload)
        // An incident says so, and is under its own name.
        var incident = record(8)
        incident.kind = .incident
        #expect(try await FileSink(path: path, layout: RecordLine(format: .envelope), maxSize: 0, maxFiles: 0).send([incident]).isEmpty)
        let last = try #require(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").last)
        let other = try JSONValue(parsing: String(last))
        #expect(other.keys == ["tenant", "kind", "event", "received_at", "incident"] && other["kind"] == .string("incident"))
        #expect(other["incident"]?.serialized == record(8).payload)
    }

    @Test func sinksWriteTheAPIsBytesUnchanged() async throws {
        // Text a serializer would normalise: spacing, \/ and \u escapes, number text, non-ASCII.
        let original =
            "{ \"id\" : \"da\\u0031\", \"lastUpdateTime\":\"2026-11-25T10:00:00.10Z\", \"title\":\"caf\\u00e9 \\/ ünï 😀\","
            + " \"n\": 1.50, \"big\": 12345678901234567890, \"e\": -0.0E+00, \"x\": null, \"future\": {\"a\": [ ]} }"
        let store = try StateStore.embedded(directory: directory.file("state"))
        _ = try await store.admission.admit(tenant: "contoso", alerts: [try Alert(json: original)], forward: .new, sinks: ["a", "e"])
        let plain = directory.file("plain.jsonl"), envelope = directory.file("envelope.jsonl")
        #expect(
            try await FileSink(path: plain, layout: RecordLine(format: .alert), maxSize: 0, maxFiles: 0).send(
                try await store.outbox.pending(sink: "a", limit: 10).records
            ).isEmpty)
        #expect(
            try await FileSink(path: envelope, layout: RecordLine(format: .envelope), maxSize: 0, maxFiles: 0).send(
                try await store.outbox.pending(sink: "e", limit: 10).records
            ).isEmpty)
        #expect(try Data(contentsOf: URL(fileURLWithPath: plain)) == Data((original + "\n").utf8))
        let wrapped = try String(contentsOfFile: envelope, encoding: .utf8)
        #expect(wrapped.hasSuffix(",\"alert\":" + original + "}\n"))
        #expect(try JSONValue(parsing: wrapped.trimmingCharacters(in: .newlines))["alert"] == JSONValue(parsing: original))
    }

    @Test func summaryFormatIsOneReadableLinePerAlert() async throws {
        let path = directory.file("summary.log")
        var alert = record(5)
        alert.payload =
            #"{"id":"da5","lastUpdateTime":"2026-11-25T18:38:22.1234567Z","severity":"High","title":"Suspicious access to LSASS service","computerDnsName":"ws-hr-0031"}"#
        var bare = record(6, event: "updated")
        bare.payload = #"{"id":"da6"}"#
        #expect(try await FileSink(path: path, layout: RecordLine(format: .summary), maxSize: 0, maxFiles: 0).send([alert, bare]).isEmpty)
        #expect(
            try String(contentsOfFile: path, encoding: .utf8) == """
                2026-11-25T18:38:22Z created High "Suspicious access to LSASS service" ws-hr-0031 da5
                - updated UnSpecified "Defender alert" - da6

                """)
    }

    @Test func summaryLinesCannotBeForgedOrShifted() {
        var alert = record(9)
        alert.tenant = "fabrikam"
        alert.payload =
            #"{"id":"da9","lastUpdateTime":"2026-11-25T18:38:22Z","severity":"Very High","title":"a \"quoted\" title\nFAKE LINE\t\u0007","computerDnsName":"host name"}"#
        let line = RecordLine(format: .summary, showsTenant: true).line(for: alert)
        #expect(line == #"2026-11-25T18:38:22Z fabrikam created "Very High" "a \"quoted\" title\nFAKE LINE\t\u0007" "host name" da9"#)
        #expect(!line.contains("\n"))
    }

    @Test func summaryNamesTheTenantOnlyWhenSeveralShareTheSink() async throws {
        let fixture = ConfigFixture()
        let second = ConfigFixture.tenant.replacingOccurrences(of: "contoso", with: "fabrikam")
        let shared = try ConfigurationLoader().load(
            path: fixture.writeConfiguration(
                ConfigFixture.tenant + "\n" + second + "\n[[sink]]\nname = \"console\"\ntype = \"stdout\"\nformat = \"summary\""))
        #expect(shared.tenantCount(sendingTo: "console") == 2)
        #expect((Pipeline.makeSink(shared.sinks[0], in: shared) as? StdoutSink)?.layout == RecordLine(format: .summary, showsTenant: true))
        let single = try ConfigurationLoader().load(
            path: fixture.writeConfiguration(
                ConfigFixture.tenant + "\n" + second
                    + "\nsinks = [\"other\"]\n[[sink]]\nname = \"console\"\ntype = \"stdout\"\nformat = \"summary\"\n[[sink]]\nname = \"other\"\ntype = \"journal\""
            ))
        #expect(single.tenantCount(sendingTo: "console") == 1)
        #expect((Pipeline.makeSink(single.sinks[0], in: single) as? StdoutSink)?.layout == RecordLine(format: .summary, showsTenant: false))
    }

    @Test func reopenFollowsLogrotate() async throws {
        let path = directory.file("alerts.jsonl")
        let sink = FileSink(path: path, layout: RecordLine(format: .alert), maxSize: 0, maxFiles: 0)
        #expect(try await sink.send([record(1)]).isEmpty)
        try FileManager.default.moveItem(atPath: path, toPath: path + ".old")
        await sink.reopen()
        #expect(try await sink.send([record(2)]).isEmpty)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == record(2).payload + "\n")
    }

    @Test func aPartialLineFromACrashIsClosedFirst() async throws {
        let path = directory.write("alerts.jsonl", #"{"id":"half"#, mode: 0o640)
        #expect(try await FileSink(path: path, layout: RecordLine(format: .alert), maxSize: 0, maxFiles: 0).send([record(3)]).isEmpty)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == record(3).payload + "\n")
    }

    /// Creating and rotating a file make its directory durable too (issue 11, hole 4).
    @Test func creatingAndRotatingSyncTheDirectory() async throws {
        let synced = Mutex<[String]>([])
        let path = directory.file("logs/alerts.jsonl")
        let recorded = FileSink(
            path: path, layout: RecordLine(format: .alert), maxSize: 10, maxFiles: 2,
            syncDirectory: { directory in
                synced.withLock { $0.append(directory) }; return FileSink.fsyncDirectory(directory)
            })
        #expect(try await recorded.send([record(1)]).isEmpty)
        // The new directory in its parent, then the new file in the new directory.
        #expect(synced.withLock { $0 } == [directory.path, directory.file("logs")])
        // The next batch would pass max_size: rotation, then the new file's directory is synced.
        #expect(try await recorded.send([record(2)]).isEmpty)
        #expect(synced.withLock { $0 }.last == directory.file("logs"))
        #expect(synced.withLock { $0 }.filter { $0 == directory.file("logs") }.count == 2)
        #expect(FileManager.default.fileExists(atPath: path + ".1"))
    }

    @Test func aDirectoryThatCannotBeSyncedIsASinkError() async throws {
        let sink = FileSink(
            path: directory.file("alerts.jsonl"), layout: RecordLine(format: .alert), maxSize: 0, maxFiles: 0,
            syncDirectory: { _ in
                errno = EIO; return -1
            })
        await #expect { try await sink.send([self.record(1)]) } throws: { ($0 as? SinkError)?.description.contains("fsync of the directory") == true }
    }

    @Test func aFullDiskIsASinkErrorNotACrash() async throws {
        let sink = FileSink(path: "/dev/full", layout: RecordLine(format: .alert), maxSize: 0, maxFiles: 0)
        await #expect(throws: SinkError.self) { try await sink.send([self.record(1)]) }
        let denied = FileSink(path: "/proc/version/alerts.jsonl", layout: RecordLine(format: .alert), maxSize: 0, maxFiles: 0)
        await #expect(throws: SinkError.self) { try await denied.send([self.record(1)]) }
    }

    @Test func journalPriorities() {
        #expect(AlertHeadline.syslogSeverity(of: "High") == 2)
        #expect(AlertHeadline.syslogSeverity(of: "medium") == 3)
        #expect(AlertHeadline.syslogSeverity(of: "Low") == 4)
        #expect(AlertHeadline.syslogSeverity(of: "Informational") == 5)
        #expect(AlertHeadline.syslogSeverity(of: "SomethingNew") == 6)
    }

    @Test func journalSinkWritesOneEntryPerAlert() async throws {
        try #require(Journal.isListening(), "no journald: run through make test")
        let tenant = "tenant-\(UUID().uuidString.prefix(8))"
        var first = record(11)
        first.tenant = tenant
        first.payload = #"{"id":"da11","title":"Suspicious access","severity":"High","status":"New","computerDnsName":"ws-1","text":"a\nb"}"#
        var second = record(12)
        second.tenant = tenant
        #expect(try await JournalSink().send([first, second]).isEmpty)
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
