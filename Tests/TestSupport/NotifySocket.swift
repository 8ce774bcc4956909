import Foundation

/// A real `AF_UNIX` datagram socket standing in for systemd's notify socket.
///
/// Bound either to a file path or to an abstract name (`@name`), it hands out each datagram
/// as text. Reads wait with `poll(2)` up to a deadline: the tests wait for events, they do not
/// sleep for fixed times.
public final class NotifySocket: @unchecked Sendable {
    // @unchecked: the descriptor is only read from the test that owns the socket.
    private let descriptor: Int32
    /// The value for `NOTIFY_SOCKET`.
    public let address: String
    private let directory: TemporaryDirectory?

    /// Binds a socket; `abstract` uses the Linux abstract namespace instead of a file.
    public init(abstract: Bool = false) {
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        precondition(descriptor >= 0, "socket() failed")
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let name: [UInt8]
        if abstract {
            let label = "defender-alertd-test-\(UUID().uuidString)"
            self.address = "@" + label
            name = [0] + Array(label.utf8)
            directory = nil
        } else {
            let directory = TemporaryDirectory()
            self.address = directory.file("notify.sock")
            name = Array(self.address.utf8)
            self.directory = directory
        }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in name.enumerated() { buffer[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + name.count)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        precondition(result == 0, "bind() failed: \(String(cString: strerror(errno)))")
    }

    deinit {
        close(descriptor)
    }

    /// The next datagram, or `nil` when none arrives within `timeout`.
    public func receive(timeout: Duration) -> String? {
        var pollDescriptor = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&pollDescriptor, 1, milliseconds) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = recv(descriptor, &buffer, buffer.count, 0)
        guard count >= 0 else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }

    /// Reads datagrams until one satisfies `predicate` or `timeout` passes; returns every
    /// datagram read, the matching one last.
    public func receive(until predicate: (String) -> Bool, timeout: Duration) -> (all: [String], matched: String?) {
        let deadline = ContinuousClock.now + timeout
        var seen: [String] = []
        while ContinuousClock.now < deadline {
            guard let message = receive(timeout: deadline - ContinuousClock.now) else { break }
            seen.append(message)
            if predicate(message) { return (seen, message) }
        }
        return (seen, nil)
    }
}
