import Foundation
import Systemd

/// Reads entries back from the journal.
public enum Journal {
    /// journald's socket for native entries.
    public static let socketPath = JournalWriter.socketPath

    /// Whether journald is listening (a stale socket file with no journald does not count).
    public static func isListening() -> Bool {
        JournalWriter.isAvailable()
    }

    public struct Failure: Error, CustomStringConvertible { public var description: String }

    /// Entries matching `match` (a `FIELD=value`); waits (bounded) until `expected` have arrived,
    /// since journald stores datagrams asynchronously.
    public static func entries(matching match: String, expected: Int) throws -> [[String: String]] {
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
        let result = try runToCompletion("/usr/bin/journalctl", ["-o", "json", "--no-pager", "--all", match])
        return try result.stdout.split(separator: "\n").map { line in
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
