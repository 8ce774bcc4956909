import Foundation
import Logging
import Systemd
import Testing
import TestSupport

/// Writes through a real systemd-journald (`make test` starts one when none runs) and reads
/// the entries back with `journalctl -o json`.
@Suite("Journal log handler against a real journald")
struct JournalLogHandlerTests {
    static let socketPath = "/run/systemd/journal/socket"

    /// Whether a datagram socket can connect: a stale socket file with no journald refuses.
    static func journaldIsListening() -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in socketPath.utf8.enumerated() { buffer[index] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }

    @Test func entriesCarryMessagePriorityCodeLocationAndMetadata() throws {
        try #require(
            Self.journaldIsListening(),
            "no journald listening on \(Self.socketPath): run the tests through `make test` (scripts/with-journald.sh)"
        )
        let run = UUID().uuidString
        let control = LogLevelControl(.debug)
        let logger = Logger(label: "journal-test", factory: LogTarget.journal.makeHandler(control: control))

        logger.warning("first line\nsecond line", metadata: ["test_run": "\(run)", "alert-id": "da638775403641234567_1", "message_id": "0123456789abcdef0123456789abcdef"])
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

/// Reads entries back from the journal.
enum Journal {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// Entries matching `match` (a `FIELD=value`); waits (bounded) until `expected` have arrived,
    /// since journald stores datagrams asynchronously.
    static func entries(matching match: String, expected: Int) throws -> [[String: String]] {
        let deadline = ContinuousClock.now + .seconds(20)
        var entries: [[String: String]] = []
        repeat {
            entries = try read(match)
            if entries.count >= expected { break }
            Thread.sleep(forTimeInterval: 0.1)  // polling for an external process, not a timing assumption
        } while ContinuousClock.now < deadline
        return entries
    }

    private static func read(_ match: String) throws -> [[String: String]] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/journalctl")
        process.arguments = ["-o", "json", "--no-pager", "--all", match]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return try String(decoding: data, as: UTF8.self).split(separator: "\n").map { line in
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw Failure(description: "journalctl printed a non-object: \(line)")
            }
            return object.compactMapValues { value in
                if let text = value as? String { return text }
                if let bytes = value as? [Int] { return String(decoding: bytes.map { UInt8($0) }, as: UTF8.self) }
                return nil
            }
        }
    }
}
