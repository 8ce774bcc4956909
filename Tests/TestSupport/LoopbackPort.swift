import Foundation

/// Ports on 127.0.0.1 for the real servers the tests start (tinyproxy, rsyslog).
public enum LoopbackPort {
    /// A port nothing listens on now, for a server a test starts a moment later (and may
    /// restart on the same port). Picked at random below the kernel's ephemeral range
    /// (`ip_local_port_range`, 32768 and up here): a port the kernel hands to a `bind(0)` server
    /// or to an outgoing connection of another test meanwhile never collides with it (seen:
    /// rsyslog's port taken by a metrics server on port 0 while the suite ran side by side).
    public static func free(udp: Bool = false) throws -> Int {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let port = Int.random(in: 20_000..<32_768, using: &generator)
            if canBind(port, udp: udp) { return port }
        }
        throw PortError(description: "no free port between 20000 and 32767")
    }

    /// Whether `port` on 127.0.0.1 can be bound now (then released).
    static func canBind(_ port: Int, udp: Bool) -> Bool {
        let descriptor = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in(
            sin_family: sa_family_t(AF_INET), sin_port: in_port_t(UInt16(port).bigEndian),
            sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// A TCP socket listening on 127.0.0.1, on a port the kernel picks; `type` may add
    /// `SOCK_NONBLOCK` or `SOCK_CLOEXEC` to `SOCK_STREAM`.
    public static func listener(type: Int32 = Int32(SOCK_STREAM.rawValue), backlog: Int32 = 16) throws -> (descriptor: Int32, port: Int) {
        let descriptor = socket(AF_INET, type, 0)
        guard descriptor >= 0 else { throw PortError(description: "socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in(
            sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")),
            sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(descriptor, backlog) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw PortError(description: "bind/listen on 127.0.0.1: \(reason)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return (descriptor, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// Holds TCP `port` on ::1 without listening (a socket bound, never listening): a client
    /// that connects to `localhost`, which resolves to ::1 as well as 127.0.0.1, is refused
    /// there at once and goes on to 127.0.0.1, instead of reaching whatever server of another
    /// test might listen on ::1 with the same port number (seen: a TLS handshake to `localhost`
    /// failing on another test's certificate). Returns the descriptor to close, or nil when
    /// this host has no IPv6 loopback (then ::1 cannot be reached either); throws when the port
    /// is taken on ::1.
    public static func holdOnIPv6Loopback(_ port: Int) throws -> Int32? {
        let descriptor = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = in_port_t(UInt16(port).bigEndian)
        address.sin6_addr = in6addr_loopback
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        guard bound == 0 else {
            let error = errno
            close(descriptor)
            if error == EADDRINUSE { throw PortError(description: "port \(port) is taken on ::1") }
            return nil
        }
        return descriptor
    }

    /// Whether something accepts TCP connections on `port`.
    public static func accepts(_ port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in(
            sin_family: sa_family_t(AF_INET), sin_port: in_port_t(UInt16(port).bigEndian),
            sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    public struct PortError: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }
}
