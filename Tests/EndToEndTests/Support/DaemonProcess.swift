import Foundation
import Testing
import TestSupport

/// The built `defender-alertd` binary run as a real process, its output captured in files.
final class DaemonProcess: @unchecked Sendable {
    // @unchecked: used from one test at a time; Process itself is thread-safe for these calls.
    static let binary: String = {
        if let path = ProcessInfo.processInfo.environment["DEFENDER_ALERTD_BINARY"] { return path }
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path + "/.build/debug/defender-alertd"
    }()

    let process = Process()
    private let output = TemporaryDirectory()

    /// Starts the binary with `arguments`; the environment is the given one only (plus PATH).
    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: Self.binary)
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
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        let daemon = try DaemonProcess(arguments, environment: environment)
        let status = try #require(daemon.waitForExit(timeout: .seconds(60)), "\(arguments) did not finish")
        return (status, daemon.stdout, daemon.stderr)
    }

    var pid: Int32 { process.processIdentifier }
    var stdout: String { (try? String(contentsOfFile: output.file("stdout"), encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: output.file("stderr"), encoding: .utf8)) ?? "" }

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
