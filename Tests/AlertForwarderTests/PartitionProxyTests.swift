import Foundation
import TestSupport
import Testing

/// The loopback proxy that the PostgreSQL tests cut and blackhole to make a partition
/// (issue 24): what it promises a test, against an echo server on loopback.
@Suite("Partition proxy")
struct PartitionProxyTests {
    /// Each octet-counted message (`LEN SP MSG`) comes back as a line; the server closes when
    /// the client does.
    static func echoServer() throws -> LoopbackStreamServer {
        try LoopbackStreamServer { connection in
            while let message = connection.nextOctetCountedMessage() { connection.reply(message + "\n") }
        }
    }

    @Test func forwardsBothWaysAndPassesTheEndOfTheStreamOn() throws {
        let server = try Self.echoServer()
        defer { server.stop() }
        let proxy = try PartitionProxy(target: server.port)
        defer { proxy.stop() }
        let client = try ProxyClient.dial(port: proxy.port)
        client.say("5 hello")
        #expect(client.line() == "hello")
        client.say("3 abc2 de")
        #expect(client.line() == "abc")
        #expect(client.line() == "de")
        // The client's FIN reaches the server, whose close comes back as the end of the stream.
        client.finishSending()
        #expect(client.nextRead() == .end)
        proxy.restore()  // no change while forwarding: returns once the proxy's thread went round
        #expect(proxy.connectionsAccepted == 1)
        #expect(proxy.bytesToTarget == 16)
        #expect(proxy.bytesFromTarget == 13)
        #expect(proxy.openConnections == 0)
        #expect(proxy.mode == .forwarding)
    }

    @Test func aCutResetsOpenConnectionsAndNewOnesUntilRestored() throws {
        let server = try Self.echoServer()
        defer { server.stop() }
        let proxy = try PartitionProxy(target: server.port)
        defer { proxy.stop() }
        let first = try ProxyClient.dial(port: proxy.port)
        first.say("5 hello")
        #expect(first.line() == "hello")
        proxy.cut()
        #expect(proxy.mode == .cut)
        #expect(proxy.connectionsCut == 1)
        #expect(first.nextRead() == .reset)
        // While cut, a new connection is accepted and reset at once.
        let second = try ProxyClient.dial(port: proxy.port)
        #expect(second.nextRead() == .reset)
        #expect(proxy.connectionsRejected == 1)
        proxy.restore()
        let third = try ProxyClient.dial(port: proxy.port)
        third.say("5 again")
        #expect(third.line() == "again")
        #expect(proxy.connectionsAccepted == 3)
        #expect(proxy.connectionsCut == 1)
    }

    @Test func aBlackholeHoldsTrafficBothWaysAndNewConnectionsUntilRestored() throws {
        let server = try Self.echoServer()
        defer { server.stop() }
        let proxy = try PartitionProxy(target: server.port)
        defer { proxy.stop() }
        let first = try ProxyClient.dial(port: proxy.port)
        first.say("5 hello")
        #expect(first.line() == "hello")
        proxy.blackhole()
        first.say("5 again")
        // Nothing comes back and nothing is forwarded (a proxy that forwards while blackholed
        // is caught when it does so within the time looked at; a correct one never fails this).
        #expect(!first.readable(withinMilliseconds: 300))
        #expect(proxy.bytesToTarget == 7)
        #expect(proxy.openConnections == 1)
        #expect(proxy.mode == .blackholed)
        // A new connection completes in the kernel's backlog but is not accepted.
        let second = try ProxyClient.dial(port: proxy.port)
        #expect(proxy.connectionsAccepted == 1)
        proxy.restore()
        // What was sent during the blackhole goes through, nothing lost, nothing reset.
        #expect(first.line() == "again")
        first.finishSending()
        let ending = first.nextRead()
        #expect(ending == .end, "the proxy: \(proxy.openConnections) open, \(proxy.bytesToTarget) bytes to the target, \(proxy.bytesFromTarget) back")
        // The echo server serves one connection at a time: the second comes once the first ended.
        second.say("4 more")
        #expect(second.line() == "more")
        #expect(proxy.connectionsAccepted == 2)
        #expect(proxy.connectionsCut == 0 && proxy.connectionsRejected == 0)
    }

    @Test func aTargetThatRefusesResetsTheClient() throws {
        let nothingListens = try LoopbackPort.free()
        let proxy = try PartitionProxy(target: nothingListens)
        defer { proxy.stop() }
        let client = try ProxyClient.dial(port: proxy.port)
        #expect(client.nextRead() == .reset)
        #expect(proxy.targetFailures == 1)
        #expect(proxy.connectionsAccepted == 1)
        #expect(proxy.acceptFailure == nil)
    }

    @Test func stopResetsConnectionsAndClosesThePort() throws {
        let server = try Self.echoServer()
        defer { server.stop() }
        let proxy = try PartitionProxy(target: server.port)
        let client = try ProxyClient.dial(port: proxy.port)
        client.say("5 hello")
        #expect(client.line() == "hello")
        proxy.stop()
        #expect(client.nextRead() == .reset)
        #expect(!LoopbackPort.accepts(proxy.port))
        // Once stopped, every call returns at once.
        proxy.stop()
        proxy.cut()
        proxy.restore()
        #expect(proxy.openConnections == 0)
    }
}

/// A blocking TCP client of 127.0.0.1 with a 120 s receive timeout (a proxy that holds what it
/// should forward or reset fails the test instead of hanging it); writes never raise SIGPIPE.
/// It was 30 s: twice in a loaded fresh-clone `make test`, the end of the stream after a
/// blackhole did not come within it. No fault was found in the proxy's code, and such runs
/// were seen to stall the whole host for about 27 s (a 15 s sleep of the reliability driver
/// took 28.8 s); the test now says what the proxy held if it happens again.
private final class ProxyClient {
    enum Read: Equatable {
        case data([UInt8])
        case end
        case reset
        case timedOut
        case failed(Int32)
    }

    private let descriptor: Int32
    private var buffer: [UInt8] = []

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }

    static func dial(port: Int) throws -> ProxyClient {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw LoopbackPort.PortError(description: "socket: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: 120, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in(
            sin_family: sa_family_t(AF_INET), sin_port: in_port_t(UInt16(port).bigEndian),
            sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw LoopbackPort.PortError(description: "connect to 127.0.0.1:\(port): \(reason)")
        }
        return ProxyClient(descriptor: descriptor)
    }

    func say(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Sends a FIN (the connection stays open for reading).
    func finishSending() {
        _ = shutdown(descriptor, Int32(SHUT_WR))
    }

    /// The next line (without its LF); nil when the stream ended, broke or timed out first.
    func line() -> String? {
        while true {
            if let end = buffer.firstIndex(of: 10) {
                let text = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(end + 1)
                return text
            }
            guard case .data(let bytes) = nextRead() else { return nil }
            buffer += bytes
        }
    }

    /// One read: what came, the end of the stream, a reset, or nothing within 120 s.
    func nextRead() -> Read {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let count = recv(descriptor, &chunk, chunk.count, 0)
        let failure = errno
        if count > 0 { return .data(Array(chunk[0..<count])) }
        if count == 0 { return .end }
        if failure == ECONNRESET { return .reset }
        if failure == EAGAIN || failure == EWOULDBLOCK { return .timedOut }
        return .failed(failure)
    }

    /// Whether something (bytes, an end, a reset) arrives within `milliseconds`.
    func readable(withinMilliseconds milliseconds: Int32) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, milliseconds) > 0
    }
}
