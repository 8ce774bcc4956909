import Foundation
import Logging
import Systemd
import TestSupport
import Testing

/// Writes through a real systemd-journald (`make test` starts one when none runs) and reads
/// the entries back with `journalctl -o json`.
@Suite("Journal log handler against a real journald")
struct JournalLogHandlerTests {
    @Test func entriesCarryMessagePriorityCodeLocationAndMetadata() throws {
        try #require(
            Journal.isListening(),
            "no journald listening on \(Journal.socketPath): run the tests through `make test` (scripts/with-journald.sh)"
        )
        let run = UUID().uuidString
        let control = LogControl(.debug)
        let logger = Logger(label: "journal-test", factory: LogTarget.journal.makeHandler(control: control))

        logger.warning(
            "first line\nsecond line",
            metadata: ["test_run": "\(run)", "alert-id": "da638775403641234567_1", "message_id": "0123456789abcdef0123456789abcdef"])
        logger.debug("debug entry", metadata: ["test_run": "\(run)"])
        logger.trace("filtered out", metadata: ["test_run": "\(run)"])
        control.level = .error
        logger.warning("now filtered out too", metadata: ["test_run": "\(run)"])

        let entries = try Journal.entries(matching: "DEFENDER_TEST_RUN=\(run)", expected: 2)
        #expect(entries.count == 2)
        let warning = try #require(entries.first { $0["PRIORITY"] == "4" })
        #expect(warning["MESSAGE"] == "first line\nsecond line")
        #expect(warning["SYSLOG_IDENTIFIER"] == "defender-alertd")
        #expect(warning["DEFENDER_ALERT_ID"] == "da638775403641234567_1")
        #expect(warning["MESSAGE_ID"] == "0123456789abcdef0123456789abcdef")
        #expect(warning["DEFENDER_LOGGER"] == "journal-test")
        #expect(warning["CODE_FILE"]?.hasSuffix("JournalLogHandlerTests.swift") == true)
        #expect(Int(warning["CODE_LINE"] ?? "") != nil)
        #expect(warning["CODE_FUNC"]?.contains("entriesCarryMessagePriorityCodeLocationAndMetadata") == true)
        let debug = try #require(entries.first { $0["PRIORITY"] == "7" })
        #expect(debug["MESSAGE"] == "debug entry")
    }
}
