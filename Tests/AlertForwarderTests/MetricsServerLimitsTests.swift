import Foundation
import Synchronization
import Systemd
import Telemetry
import TestSupport
import Testing

@testable import AlertForwarder

/// `metrics_listen` cannot take the descriptors the pipeline needs: 1,100 idle connections
/// used to take all 1,024, and every poll then failed with `Too many open files`. The server
/// runs in this process with a small cap and short timeouts (``MetricsServer/Limits``); the
/// clients are plain blocking sockets, run off the cooperative pool.
@Suite("Metrics server limits")
struct MetricsServerLimitsTests {
    @Test func idleConnectionsOverTheCapHoldNoDescriptorAreClosedAndScrapesAreAnswered() async throws {
        let limits = MetricsServer.Limits(connections: 4, idleTimeout: .seconds(1), lifetime: .seconds(60), backlog: 128)
        try await withMetricsServer(limits) { port in
            let idle = try await offThePool { try (0..<40).map { _ in try Client.dial(port: port) } }
            defer { idle.forEach { $0.hangUp() } }
            // Held open, they are not all accepted: the rest wait in the kernel's queue. (NIO
            // accepts up to 4 connections per read of the listening socket, so the cap can be
            // passed by 3 at most.)
            var most = 0
            for _ in 0..<20 {
                most = max(most, acceptedDescriptors(port: port))
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(most >= 1 && most <= limits.connections + 3, "\(most) connections accepted at once")
            // A scrape waits behind them; each is closed after the idle timeout, then the next
            // ones are accepted, and the scrape is answered.
            // The request is written as soon as the connection is made, before the server
            // accepts it (a busy machine must not delay it past the idle timeout).
            let scrape = try await offThePool {
                let client = try Client.dial(port: port)
                client.say("GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                return client
            }
            defer { scrape.hangUp() }
            let answer = try await offThePool { scrape.readUntilClosed(timeout: .seconds(60)) }
            let text = String(decoding: answer.bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 200"), "\(text.prefix(200))")
            #expect(answer.closed)
            let closed = try await offThePool { idle.map { $0.readUntilClosed(timeout: .seconds(30)).closed } }
            #expect(closed.allSatisfy { $0 }, "\(closed.filter { !$0 }.count) idle connections still open")
            #expect(
                try await eventually { acceptedDescriptors(port: port) == 0 }, "the server still holds \(acceptedDescriptors(port: port)) connections"
            )
        }
    }

    /// Bytes of a request head that never ends do not count as activity: the idle timeout
    /// closes the connection (the lifetime here is too long to be what closes it).
    @Test func aRequestHeadSentAByteAtATimeIsClosedByTheIdleTimeout() async throws {
        let limits = MetricsServer.Limits(connections: 4, idleTimeout: .milliseconds(500), lifetime: .seconds(120), backlog: 128)
        try await withMetricsServer(limits) { port in
            let client = try await offThePool { try Client.dial(port: port) }
            defer { client.hangUp() }
            client.say("GET /metrics HTTP/1.1\r\n")
            let closed = try await offThePool { client.trickle("X-Slow: yes\r\n", every: .milliseconds(100), until: .seconds(30)) }
            #expect(closed, "a head trickling in for 30 s kept its connection")
        }
    }

    /// A request body that trickles in keeps Hummingbird's idle timeout from firing (each part
    /// read is activity): the connection's lifetime ends it.
    @Test func aBodySentAByteAtATimeIsClosedAtTheEndOfTheConnectionsLifetime() async throws {
        let limits = MetricsServer.Limits(connections: 4, idleTimeout: .seconds(120), lifetime: .seconds(1), backlog: 128)
        try await withMetricsServer(limits) { port in
            let client = try await offThePool { try Client.dial(port: port) }
            defer { client.hangUp() }
            client.say("GET /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n")
            let closed = try await offThePool { client.trickle("x", every: .milliseconds(100), until: .seconds(30)) }
            #expect(closed, "a body trickling in for 30 s kept its connection")
        }
    }

    @Test func theSoftLimitOfDescriptorsIsRaisedToTheHardLimit() throws {
        let limit = try #require(DescriptorLimit.current())
        try #require(limit.hard > 1, "no room to lower the soft limit below the hard one")
        // One below the hard limit first (harmless for the other tests of this process), so
        // that the raise has something to do.
        var lowered = rlimit()
        lowered.rlim_cur = rlim_t(limit.hard - 1)
        lowered.rlim_max = rlim_t(limit.hard)
        try #require(setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lowered) == 0)
        let raised = try #require(DescriptorLimit.raiseSoftLimit())
        #expect(raised.after == limit.hard)
        #expect(DescriptorLimit.current()?.soft == limit.hard)
    }
}

// MARK: Support

/// Runs a metrics server on 127.0.0.1 (a port of its choosing) for `body`.
private func withMetricsServer(_ limits: MetricsServer.Limits, _ body: @Sendable (_ port: Int) async throws -> Void) async throws {
    let (addresses, continuation) = AsyncStream<String>.makeStream()
    let server = MetricsServer(
        address: .tcp(host: "127.0.0.1", port: 0), telemetry: Telemetry(), beforeScrape: {},
        health: { HealthReport(stalls: [], failures: []) }, status: StatusLine(notifier: RecordingNotifier()),
        limits: limits, logger: LogRecords().logger(), onReady: { continuation.yield($0) })
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.run() }
        defer { group.cancelAll() }
        var iterator = addresses.makeAsyncIterator()
        guard let address = await iterator.next(), let port = address.split(separator: ":").last.flatMap({ Int($0) }) else {
            Issue.record("the metrics server did not start")
            return
        }
        try await body(port)
    }
}

/// Blocking work on a Dispatch thread, not on the cooperative pool.
private func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
    }
}

/// Whether `condition` holds within 10 seconds (checked every 50 ms).
private func eventually(_ condition: @Sendable () -> Bool) async throws -> Bool {
    for _ in 0..<200 {
        if condition() { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return condition()
}

/// This process's descriptors that are connections accepted on 127.0.0.1:`port`: the sockets
/// of `/proc/net/tcp` with that local port that are not listening and have an inode (one still
/// in the kernel's accept queue has none: no process holds it), found among `/proc/self/fd`.
private func acceptedDescriptors(port: Int) -> Int {
    guard let table = readWhole("/proc/net/tcp") else { return -1 }
    let hex = String(port, radix: 16, uppercase: true)
    let local = ":" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    var inodes: Set<String> = []
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    for line in table.split(separator: "\n").dropFirst() {
        let fields = line.split(separator: " ")
        guard fields.count > 9, fields[1].hasSuffix(local), fields[3] != "0A", fields[9] != "0" else { continue }
        inodes.insert(String(fields[9]))
    }
    let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return descriptors.filter { descriptor in
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + descriptor),
            target.hasPrefix("socket:["), target.hasSuffix("]")
        else { return false }
        return inodes.contains(String(target.dropFirst("socket:[".count).dropLast()))
    }.count
}

/// A file read to its end with read(2): a `/proc` file says it is empty and comes a page per
/// read (Foundation's `String(contentsOfFile:)` returned only the first 4 KB of /proc/net/tcp).
private func readWhole(_ path: String) -> String? {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = read(descriptor, &buffer, buffer.count)
        if count < 0, errno == EINTR { continue }
        guard count >= 0 else { return nil }
        if count == 0 { return String(decoding: bytes, as: UTF8.self) }
        bytes += buffer[0..<count]
    }
}

private struct ClientError: Error, CustomStringConvertible {
    var description: String
}

/// A blocking TCP connection to 127.0.0.1 (writes never raise SIGPIPE), closed once.
private final class Client: Sendable {
    let descriptor: Int32
    private let stillOpen = Mutex(true)

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    static func dial(port: Int) throws -> Client {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw ClientError(description: "socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in(
            sin_family: sa_family_t(AF_INET), sin_port: in_port_t(UInt16(port).bigEndian),
            sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw ClientError(description: "connect to 127.0.0.1:\(port): \(reason)")
        }
        return Client(descriptor: descriptor)
    }

    /// Sends `text`; false when the connection is gone.
    @discardableResult
    func say(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) == $0.count }
    }

    /// Reads until the server closes the connection or `timeout` passes: what came, and
    /// whether it was closed (an end of file or a reset).
    func readUntilClosed(timeout: Duration) -> (bytes: [UInt8], closed: Bool) {
        let deadline = ContinuousClock.now + timeout
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return (bytes, false) }
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let milliseconds = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
            let ready = poll(&entry, 1, Int32(min(1000, max(1, milliseconds))))
            if ready < 0, errno == EINTR { continue }
            guard ready > 0 else { continue }
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count > 0 {
                bytes += buffer[0..<count]
            } else if count < 0, errno == EINTR || errno == EAGAIN {
                continue
            } else {
                return (bytes, true)
            }
        }
    }

    /// Sends `piece` every `interval` until the server closes the connection (true) or `limit`
    /// passes (false).
    func trickle(_ piece: String, every interval: Duration, until limit: Duration) -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if readUntilClosed(timeout: interval).closed { return true }
            if !say(piece) { return true }
        }
        return false
    }

    /// Closes the connection (once: the number may be another's afterwards).
    func hangUp() {
        let wasOpen = stillOpen.withLock { isOpen in
            let was = isOpen
            isOpen = false
            return was
        }
        if wasOpen { close(descriptor) }
    }

    deinit {
        hangUp()
    }
}
