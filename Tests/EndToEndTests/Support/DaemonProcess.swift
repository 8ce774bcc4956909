import Foundation
import TestSupport
import Testing

/// A built executable of this package (`defender-alertd` by default) run as a real process,
/// its output captured in files.
final class DaemonProcess: @unchecked Sendable {
    // @unchecked: used from one test at a time; Process itself is thread-safe for these calls.
    /// The directory holding the built products (`DEFENDER_BUILD_DIR` overrides).
    static let buildDirectory: String = {
        if let path = ProcessInfo.processInfo.environment["DEFENDER_BUILD_DIR"] { return path }
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path + "/.build/debug"
    }()

    let process = Process()
    private let output = TemporaryDirectory()

    /// Starts the binary with `arguments`; the environment is the given one only (plus PATH).
    /// `path` runs another program instead (a test's helper).
    init(_ arguments: [String], environment: [String: String] = [:], executable: String = "defender-alertd", path: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: path ?? Self.buildDirectory + "/" + executable)
        process.arguments = arguments
        process.environment = environment.merging(["PATH": "/usr/bin:/bin"]) { mine, _ in mine }
        output.write("stdout", "")
        output.write("stderr", "")
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output.file("stdout")))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: output.file("stderr")))
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// Runs to completion (bounded) and returns the exit status.
    static func run(
        _ arguments: [String], environment: [String: String] = [:], executable: String = "defender-alertd"
    ) throws -> (status: Int32, stdout: String, stderr: String) {
        let daemon = try DaemonProcess(arguments, environment: environment, executable: executable)
        let status = try #require(daemon.waitForExit(timeout: .seconds(60)), "\(arguments) did not finish")
        return (status, daemon.stdout, daemon.stderr)
    }

    var pid: Int32 { process.processIdentifier }
    var stdout: String { (try? String(contentsOfFile: output.file("stdout"), encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: output.file("stderr"), encoding: .utf8)) ?? "" }
    /// Standard output as bytes (it may not be UTF-8).
    var stdoutBytes: Data { FileManager.default.contents(atPath: output.file("stdout")) ?? Data() }

    /// Waits (bounded) until stdout has a line starting with `prefix`; returns the rest of it.
    func waitForLine(startingWith prefix: String, timeout: Duration = .seconds(60)) -> String? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, process.isRunning {
            if let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) {
                return String(line.dropFirst(prefix.count))
            }
            Thread.sleep(forTimeInterval: 0.02)  // polling a child's output; no result depends on it
        }
        return nil
    }

    func signal(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// The exit status, or `nil` if the process is still running after `timeout`.
    func waitForExit(timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.02)  // polling a child process; no result depends on it
        }
        return process.isRunning ? nil : process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
