import Foundation

/// The process's resident memory, open file descriptors and threads, from `/proc/self`.
public struct ProcessStats: Sendable, Equatable {
    public var residentBytes: Int
    public var openFileDescriptors: Int
    public var threads: Int

    /// Now; nil where `/proc` cannot be read.
    public static func current() -> ProcessStats? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        var rss: Int?
        var threads: Int?
        for line in status.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2 else { continue }
            if words[0] == "VmRSS:" { rss = Int(words[1]).map { $0 * 1024 } }
            if words[0] == "Threads:" { threads = Int(words[1]) }
        }
        // Listing the directory opens one more descriptor, which is not counted.
        guard let rss, let threads, let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return nil }
        return ProcessStats(residentBytes: rss, openFileDescriptors: max(0, fds.count - 1), threads: threads)
    }
}
