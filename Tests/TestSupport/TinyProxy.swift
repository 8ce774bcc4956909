import Foundation

/// A real HTTP proxy (Debian's tinyproxy) on 127.0.0.1, for the duration of a test.
public final class TinyProxy: @unchecked Sendable {
    // @unchecked: the process and paths are set once in init; Process is thread-safe for these calls.
    public let port: Int
    private let process = Process()
    private let directory = TemporaryDirectory()

    /// Starts tinyproxy, asking for `basicAuth` when given; waits (bounded) until it accepts
    /// connections.
    public init(basicAuth: (user: String, password: String)? = nil) throws {
        port = try LoopbackPort.free()
        chmod(directory.path, 0o777)  // tinyproxy drops to nobody and writes its log here
        let log = directory.file("tinyproxy.log")
        let config = directory.write(
            "tinyproxy.conf",
            """
            User nobody
            Group nogroup
            Port \(port)
            Listen 127.0.0.1
            Timeout 30
            LogFile "\(log)"
            LogLevel Connect
            MaxClients 20
            Allow 127.0.0.1
            \(basicAuth.map { "BasicAuth \($0.user) \($0.password)" } ?? "")
            """, mode: 0o644)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/tinyproxy")
        process.arguments = ["-d", "-c", config]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + .seconds(20)
        while !LoopbackPort.accepts(port) {
            guard ContinuousClock.now < deadline, process.isRunning else {
                throw TinyProxyError(description: "tinyproxy did not start (is it installed? make deps installs it)")
            }
            Thread.sleep(forTimeInterval: 0.05)  // waiting for an external process to listen
        }
    }

    deinit {
        // tinyproxy acts on SIGTERM only when its event loop wakes up; a test proxy may just die.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// What tinyproxy logged so far.
    public var log: String {
        (try? String(contentsOfFile: directory.file("tinyproxy.log"), encoding: .utf8)) ?? ""
    }

    public struct TinyProxyError: Error, CustomStringConvertible { public var description: String }
}
