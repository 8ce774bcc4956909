import Foundation
import Synchronization

/// A TCP server on 127.0.0.1 (a port the kernel picks) whose behaviour a test writes as a
/// handler: a RELP receiver that refuses one message or drops the session, a syslog receiver
/// that resets connections. Plain blocking sockets on one thread of its own, independent of
/// the daemon's SwiftNIO code; connections are served one after the other.
public final class LoopbackStreamServer: Sendable {
    public let port: Int
    /// The connection being served (-1: none) and the listener (-1: closed), shared with the
    /// server's thread.
    fileprivate final class Current: Sendable {
        let descriptor = Mutex<Int32>(-1)
        let listener: Mutex<Int32>
        init(listener: Int32) { self.listener = Mutex(listener) }
    }

    private let current: Current

    /// Starts listening and serving; `handler` runs once per accepted connection, on the
    /// server's thread, and the connection is closed when it returns.
    public init(handler: @escaping @Sendable (Connection) -> Void) throws {
        let (descriptor, port) = try LoopbackPort.listener()
        self.port = port
        let current = Current(listener: descriptor)
        self.current = current
        do {
            try DedicatedThread.start {
                // Descriptors are closed here only, never by stop() on another thread: a number
                // closed there while this thread still used it could be another test's socket
                // by then (a listener of another server, accepting its connections here).
                while true {
                    let client = accept(descriptor, nil, nil)
                    if client < 0, errno == EINTR { continue }
                    guard client >= 0 else {
                        current.listener.withLock { listener in
                            close(listener)
                            listener = -1
                        }
                        return
                    }
                    current.descriptor.withLock { $0 = client }
                    let connection = Connection(descriptor: client, current: current)
                    handler(connection)
                    connection.hangUp()
                }
            }
        } catch {
            close(descriptor)
            throw error
        }
    }

    /// Stops accepting and ends the connection being served (the server's thread then closes
    /// them: shutdown(2) wakes its accept(2) and its reads).
    public func stop() {
        current.listener.withLock { if $0 >= 0 { _ = shutdown($0, Int32(SHUT_RDWR)) } }
        current.descriptor.withLock { if $0 >= 0 { _ = shutdown($0, Int32(SHUT_RDWR)) } }
    }

    /// One accepted connection, used on the server's thread only.
    public final class Connection {
        private let descriptor: Int32
        private var buffer: [UInt8] = []
        private var open = true

        /// Where the server shares it with stop(), which shuts it down: it is closed there, under
        /// the same lock.
        private let current: Current

        fileprivate init(descriptor: Int32, current: Current) {
            self.descriptor = descriptor
            self.current = current
        }

        /// Reads what arrived; false when the client closed the connection or it broke.
        private func receive() -> Bool {
            guard open else { return false }
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return false }
            buffer += chunk[0..<count]
            return true
        }

        /// The next RELP frame (`TXNR SP COMMAND SP DATALEN [SP DATA] LF`); nil at the end.
        public func nextRELPFrame() -> (transaction: Int, command: String, data: [UInt8])? {
            while true {
                if let frame = takeRELPFrame() { return frame }
                guard receive() else { return nil }
            }
        }

        private func takeRELPFrame() -> (transaction: Int, command: String, data: [UInt8])? {
            guard let first = buffer.firstIndex(of: 32), let second = buffer[(first + 1)...].firstIndex(of: 32) else { return nil }
            var index = second + 1
            var length = 0
            while index < buffer.count, (48...57).contains(buffer[index]) {
                length = length * 10 + Int(buffer[index] - 48)
                index += 1
            }
            guard index < buffer.count else { return nil }
            var data: [UInt8] = []
            if buffer[index] == 32 {
                guard buffer.count > index + 1 + length else { return nil }
                data = Array(buffer[(index + 1)..<(index + 1 + length)])
                index += 1 + length
            }
            guard buffer[index] == 10 else { return nil }
            let transaction = Int(String(decoding: buffer[..<first], as: UTF8.self)) ?? -1
            let command = String(decoding: buffer[(first + 1)..<second], as: UTF8.self)
            buffer.removeFirst(index + 1)
            return (transaction, command, data)
        }

        /// The next octet-counted syslog message (`LEN SP MSG`, RFC 6587 §3.4.1); nil at the end.
        public func nextOctetCountedMessage() -> String? {
            while true {
                if let space = buffer.firstIndex(of: 32), let length = Int(String(decoding: buffer[..<space], as: UTF8.self)),
                    buffer.count >= space + 1 + length
                {
                    let message = String(decoding: buffer[(space + 1)..<(space + 1 + length)], as: UTF8.self)
                    buffer.removeFirst(space + 1 + length)
                    return message
                }
                guard receive() else { return nil }
            }
        }

        /// Sends `text` (never raising SIGPIPE on a connection the client dropped).
        public func reply(_ text: String) {
            let bytes = Array(text.utf8)
            _ = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        /// A RELP answer: `TXNR rsp DATALEN DATA LF`.
        public func replyRELP(_ transaction: Int, _ data: String) {
            reply("\(transaction) rsp \(data.utf8.count) \(data)\n")
        }

        /// Resets the connection (`SO_LINGER` 0: RST, what was not read is thrown away).
        public func reset() {
            guard open else { return }
            var option = linger(l_onoff: 1, l_linger: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
            hangUp()
        }

        /// Closes the connection (FIN), once.
        public func hangUp() {
            guard open else { return }
            open = false
            current.descriptor.withLock { shared in
                close(descriptor)
                shared = -1
            }
        }
    }
}
