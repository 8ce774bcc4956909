import Foundation

/// Debian's rsyslog as a real syslog receiver, started as an ordinary process with its own
/// configuration and work directory (no system service is touched): UDP, TCP, TLS (GnuTLS,
/// with a test CA's server certificate) and RELP inputs on loopback, each writing what it
/// receives, byte for byte, one message per line, to its own file.
public final class RsyslogReceiver: @unchecked Sendable {
    // @unchecked: each test owns its receiver and uses it from one task.
    public enum Input: String, CaseIterable, Sendable { case udp, tcp, tls, relp }

    public static let executable = "/usr/sbin/rsyslogd"
    static let modules = "/usr/lib/\(multiarch)/rsyslog"
    #if arch(x86_64)
        static let multiarch = "x86_64-linux-gnu"
    #else
        static let multiarch = "aarch64-linux-gnu"
    #endif

    /// rsyslogd with the RELP and GnuTLS modules (Debian's rsyslog, rsyslog-relp, rsyslog-gnutls).
    public static var isInstalled: Bool {
        FileManager.default.isExecutableFile(atPath: executable)
            && ["imrelp.so", "lmnsd_gtls.so", "imtcp.so", "imudp.so"].allSatisfy { FileManager.default.fileExists(atPath: "\(modules)/\($0)") }
    }

    public let directory = TemporaryDirectory()
    public let ports: [Input: Int]
    public let authority: TestCertificateAuthority
    private var pid: pid_t?
    /// The TCP inputs' ports held on ::1 (``LoopbackPort/holdOnIPv6Loopback(_:)``), for a sink
    /// that connects to `localhost`.
    private let heldOnIPv6: [Int32]

    /// Picks free loopback ports and writes the configuration; `start()` runs it. The server
    /// certificate is for `localhost` and 127.0.0.1, or `serverCertificate` when given.
    /// With `requireClientCertificate`, the TLS input takes only clients whose certificate the
    /// test CA signed (`x509/certvalid`).
    public init(
        maxMessageSize: String = "256k", serverCertificate: (certificate: String, key: String)? = nil,
        authority: TestCertificateAuthority? = nil, requireClientCertificate: Bool = false
    ) throws {
        self.authority = try authority ?? TestCertificateAuthority()
        var ports: [Input: Int] = [:]
        var held: [Int32] = []
        for input in Input.allCases {
            for attempt in 1... {
                let port = try LoopbackPort.free(udp: input == .udp)
                do {
                    if input != .udp, let descriptor = try LoopbackPort.holdOnIPv6Loopback(port) { held.append(descriptor) }
                    ports[input] = port
                    break
                } catch  where attempt < 20 {
                    continue
                }
            }
        }
        self.ports = ports
        self.heldOnIPv6 = held
        let server = try serverCertificate ?? self.authority.serverCertificate()
        let ca = directory.write("ca.pem", self.authority.pem)
        let certificate = directory.write("server.pem", server.certificate)
        let key = directory.write("server-key.pem", server.key)
        try FileManager.default.createDirectory(atPath: directory.file("work"), withIntermediateDirectories: true)
        var config = """
            global(workDirectory="\(directory.file("work"))" maxMessageSize="\(maxMessageSize)"
                   defaultNetstreamDriverCAFile="\(ca)" defaultNetstreamDriverCertFile="\(certificate)"
                   defaultNetstreamDriverKeyFile="\(key)")
            # Messages are written before an input answers: a RELP "200 OK" means on disk here.
            main_queue(queue.type="Direct")
            module(load="\(Self.modules)/imudp.so")
            module(load="\(Self.modules)/imtcp.so" maxSessions="50")
            module(load="\(Self.modules)/imrelp.so")
            template(name="raw" type="string" string="%rawmsg%\\n")
            input(type="imudp" address="127.0.0.1" port="\(ports[.udp]!)" ruleset="udp")
            input(type="imtcp" address="127.0.0.1" port="\(ports[.tcp]!)" ruleset="tcp")
            input(type="imtcp" address="127.0.0.1" port="\(ports[.tls]!)" ruleset="tls"
                  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="\(requireClientCertificate ? "x509/certvalid" : "anon")")
            input(type="imrelp" address="127.0.0.1" port="\(ports[.relp]!)" ruleset="relp")

            """
        for input in Input.allCases {
            config += """
                ruleset(name="\(input.rawValue)") { action(type="omfile" file="\(file(input))" template="raw") }

                """
        }
        directory.write("rsyslog.conf", config, mode: 0o644)
    }

    deinit {
        forceStop()
        for descriptor in heldOnIPv6 { close(descriptor) }
    }

    /// The file where `input` writes what it received.
    public func file(_ input: Input) -> String { directory.file("\(input.rawValue).log") }

    // Each wait comes twice: blocking, for tests whose code under test runs in other processes,
    // and async, for tests that run the sink in this process (a blocked thread of the small
    // cooperative pool could keep the sink's own tasks from running).

    /// Starts rsyslogd in the foreground and waits until its TCP listeners accept connections.
    public func start() throws {
        try launch()
        _ = Self.poll(every: .milliseconds(50), timeout: .seconds(30)) { listening || !isRunning }
        try checkListening()
    }

    public func start() async throws {
        try launch()
        _ = await Self.poll(every: .milliseconds(50), timeout: .seconds(30)) { listening || !isRunning }
        try checkListening()
    }

    /// Stops it, SIGTERM (a clean stop) or SIGKILL, and reaps it.
    public func stop(kill: Bool = false) {
        guard signal(kill: kill) else { return }
        if !Self.poll(every: .milliseconds(20), timeout: .seconds(30), reaped) { forceStop() }
    }

    public func stop(kill: Bool = false) async {
        guard signal(kill: kill) else { return }
        if await !Self.poll(every: .milliseconds(20), timeout: .seconds(30), reaped) { forceStop() }
    }

    /// Waits (bounded) until `input` received at least `count` messages; returns them.
    public func waitForMessages(_ input: Input, count: Int, timeout: Duration = .seconds(30)) -> [String] {
        _ = Self.poll(every: .milliseconds(50), timeout: timeout) { received(input).count >= count }
        return received(input)
    }

    public func waitForMessages(_ input: Input, count: Int, timeout: Duration = .seconds(30)) async -> [String] {
        _ = await Self.poll(every: .milliseconds(50), timeout: timeout) { received(input).count >= count }
        return received(input)
    }

    private func launch() throws {
        pid = try Self.spawn(
            [Self.executable, "-n", "-f", directory.file("rsyslog.conf"), "-i", directory.file("rsyslog.pid")],
            output: directory.file("rsyslogd.out"))
    }

    private var listening: Bool {
        [Input.tcp, .tls, .relp].allSatisfy { LoopbackPort.accepts(ports[$0]!) }
    }

    private func checkListening() throws {
        guard listening else { throw ReceiverError("rsyslogd did not start listening: \(log)") }
    }

    /// Sends the signal; false when nothing runs.
    private func signal(kill: Bool) -> Bool {
        guard let pid else { return false }
        Foundation.kill(pid, kill ? SIGKILL : SIGTERM)
        return true
    }

    /// Whether the process has exited (and is reaped now); forgets it then.
    private func reaped() -> Bool {
        guard let pid else { return true }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) != 0 else { return false }
        self.pid = nil
        try? FileManager.default.removeItem(atPath: directory.file("rsyslog.pid"))
        return true
    }

    private func forceStop() {
        guard let pid else { return }
        Foundation.kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        self.pid = nil
    }

    /// Polls `done` until it holds or `timeout` passes; whether it held.
    private static func poll(every interval: Duration, timeout: Duration, _ done: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !done() {
            guard ContinuousClock.now < deadline else { return false }
            Thread.sleep(forTimeInterval: Double(interval.components.attoseconds) / 1e18)  // waiting for another process
        }
        return true
    }

    private static func poll(every interval: Duration, timeout: Duration, _ done: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !done() {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: interval)
        }
        return true
    }

    private var isRunning: Bool {
        guard let pid else { return false }
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == 0
    }

    /// Starts `arguments` with no signal blocked or ignored (Foundation's Process passes on the
    /// calling thread's mask, and test threads block SIGTERM), output appended to `output`.
    static func spawn(_ arguments: [String], output: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let result = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard result == 0 else { throw ReceiverError("cannot start \(arguments[0]): \(String(cString: strerror(result)))") }
        return pid
    }

    /// What rsyslogd printed.
    public var log: String {
        (try? String(contentsOfFile: directory.file("rsyslogd.out"), encoding: .utf8)) ?? ""
    }

    /// The messages `input` received, in order.
    public func received(_ input: Input) -> [String] {
        let text = (try? String(contentsOfFile: file(input), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init)
    }

    public struct ReceiverError: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }
}
