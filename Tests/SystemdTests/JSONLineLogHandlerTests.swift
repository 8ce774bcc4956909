import Foundation
import Logging
import Synchronization
import Testing

@testable import Systemd

/// `log_format = "json"`: one JSON object a line with the journal's fields, read back by
/// Foundation's own JSON parser.
@Suite("JSON log lines")
struct JSONLineLogHandlerTests {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        var objects: [[String: Any]] {
            lines.withLock { $0 }.map { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? [:] }
        }
    }

    @Test func aLineHoldsTheJournalFieldsAsStringsAndSurvivesAnyText() throws {
        let lines = Lines()
        var logger = Logger(label: "json-test") { JSONLineLogHandler(label: $0, write: lines.append) }
        logger[metadataKey: "tenant"] = "contoso"
        let awkward = "first line\nsecond \"quoted\" \\ tab\t bell\u{07} nul\u{00} é 🚨"
        logger.warning("\(awkward)", metadata: ["alert-id": "da638775403641234567_1", "message_id": "0123456789abcdef0123456789abcdef"])

        let raw = try #require(lines.lines.withLock { $0.first })
        #expect(!raw.contains("\n"), "one line: \(raw)")
        let object = try #require(lines.objects.first)
        #expect(object["MESSAGE"] as? String == awkward)
        #expect(object["PRIORITY"] as? String == "4")
        #expect(object["SYSLOG_IDENTIFIER"] as? String == "defender-alertd")
        #expect(object["DEFENDER_LOGGER"] as? String == "json-test")
        #expect(object["DEFENDER_TENANT"] as? String == "contoso")
        #expect(object["DEFENDER_ALERT_ID"] as? String == "da638775403641234567_1")
        #expect(object["MESSAGE_ID"] as? String == "0123456789abcdef0123456789abcdef")
        #expect((object["CODE_FILE"] as? String)?.hasSuffix("JSONLineLogHandlerTests.swift") == true)
        #expect(Int(object["CODE_LINE"] as? String ?? "") != nil)
        // The time first, as a collector's parser expects it.
        #expect(raw.hasPrefix("{\"TIMESTAMP\":\""))
        let timestamp = try #require(object["TIMESTAMP"] as? String)
        #expect(timestamp.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z/) != nil, "\(timestamp)")
    }

    @Test(arguments: [
        (0.0, "1970-01-01T00:00:00.000000Z"),
        (1_796_634_611.125, "2026-12-07T09:10:11.125000Z"),
        (951_782_400.5, "2000-02-29T00:00:00.500000Z"),
        (-0.5, "1969-12-31T23:59:59.500000Z"),
    ])
    func timestamps(seconds: Double, text: String) {
        #expect(JSONLineLogHandler.timestamp(Date(timeIntervalSince1970: seconds)) == text)
    }
}
