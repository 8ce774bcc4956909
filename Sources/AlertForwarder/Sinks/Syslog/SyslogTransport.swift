import DefenderAPI
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Carries syslog messages to a receiver and says when they count as delivered.
protocol SyslogTransport: Sendable {
    /// Sends the messages in order; returns when the transport's confirmation rule holds
    /// (UDP: handed to the kernel; TCP/TLS: written on a connection that is still open; RELP:
    /// every message acknowledged by the receiver).
    func send(_ messages: [[UInt8]]) async throws(SinkError)
    func shutdown() async
}

/// UDP (RFC 5426): one message per datagram, best effort. Nothing tells the sender whether a
/// datagram arrived; an ICMP "port unreachable" from an earlier send makes a later one fail
/// (`connection refused`), which at least shows a receiver that is down.
actor DatagramTransport: SyslogTransport {
    private let host: String
    private let port: Int
    private var channel: Channel?

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    func send(_ messages: [[UInt8]]) async throws(SinkError) {
        let channel = try await connected()
        do {
            var last: EventLoopFuture<Void>?
            for message in messages {
                last = channel.write(channel.allocator.buffer(bytes: message))
            }
            channel.flush()
            try await last?.get()
        } catch {
            self.channel = nil
            channel.close(promise: nil)
            throw SinkError("sending to udp://\(host):\(port) failed: \(StreamConnection.describe(error))")
        }
    }

    private func connected() async throws(SinkError) -> Channel {
        if let channel, channel.isActive { return channel }
        do {
            let (host, port) = (self.host, self.port)
            let address = try await NIOThreadPool.singleton.runIfActive { try SocketAddress.makeAddressResolvingHost(host, port: port) }
            let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(to: address).get()
            self.channel = channel
            return channel
        } catch {
            throw SinkError("cannot reach udp://\(host):\(port): \(StreamConnection.describe(error))")
        }
    }

    func shutdown() async {
        try? await channel?.close().get()
        channel = nil
    }
}

/// TCP or TLS (RFC 6587 / RFC 5425): messages framed by octet counting or a line end, on one
/// connection kept between batches. A batch counts as delivered when the kernel took all of it
/// and the connection is still open afterwards; a connection the receiver closed (a restart)
/// is noticed before the next batch and opened again, so that batch is not written into it.
actor StreamTransport: SyslogTransport {
    private let address: SyslogAddress
    private let framing: SyslogFraming
    private let tls: SyslogTLS?
    private let timeout: Duration
    private var connection: StreamConnection?

    init(address: SyslogAddress, framing: SyslogFraming, tls: SyslogTLS?, timeout: Duration) {
        self.address = address
        self.framing = framing
        self.tls = tls
        self.timeout = timeout
    }

    func send(_ messages: [[UInt8]]) async throws(SinkError) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(messages.reduce(0) { $0 + $1.count + 8 })
        for message in messages { bytes += framing.frame(message) }
        let connection = try await open()
        do {
            try await connection.write(bytes)
        } catch {
            await drop()
            throw error
        }
        guard connection.isOpen else {
            await drop()
            throw SinkError("the connection to \(connection.peer) closed while the batch was written; it is sent again")
        }
    }

    private func open() async throws(SinkError) -> StreamConnection {
        if let connection, connection.isOpen { return connection }
        await drop()
        let connection = try await StreamConnection.open(address, tls: tls, timeout: timeout)
        self.connection = connection
        return connection
    }

    private func drop() async {
        await connection?.close()
        connection = nil
    }

    func shutdown() async {
        await drop()
    }
}

/// RELP: every message is a `syslog` command the receiver answers with `200 OK` once it has
/// taken it; a batch counts as delivered only when every answer came. At most `window`
/// commands are outstanding (librelp's default window is 128). A connection lost mid-batch
/// loses nothing: the batch is sent again on a new connection (messages the receiver had
/// already acknowledged arrive twice).
actor RELPTransport: SyslogTransport {
    private let address: SyslogAddress
    private let tls: SyslogTLS?
    private let timeout: Duration
    private let window: Int
    private var connection: StreamConnection?
    private var received: [UInt8] = []
    private var transaction = 0

    init(address: SyslogAddress, tls: SyslogTLS?, timeout: Duration, window: Int = 128) {
        self.address = address
        self.tls = tls
        self.timeout = timeout
        self.window = window
    }

    /// What the client offers when it opens a session.
    static var offers: String {
        "relp_version=0\nrelp_software=\(ProductInfo.name),\(ProductInfo.version),https://github.com/defender-alertd\ncommands=syslog"
    }

    func send(_ messages: [[UInt8]]) async throws(SinkError) {
        do throws(SinkError) {
            let connection = try await open()
            var next = 0
            while next < messages.count {
                let chunk = messages[next..<min(next + window, messages.count)]
                var bytes: [UInt8] = []
                var expected: [Int] = []
                for message in chunk {
                    transaction = RELPFrame.next(after: transaction)
                    expected.append(transaction)
                    bytes += RELPFrame(transaction: transaction, command: "syslog", data: message).bytes
                }
                try await connection.write(bytes)
                for number in expected {
                    let answer = try await answer(to: number, on: connection)
                    guard answer.status == 200 else {
                        throw SinkError("the receiver at \(connection.peer) did not take a message: \(answer.text)")
                    }
                }
                next += chunk.count
            }
        } catch {
            await drop()
            throw error
        }
    }

    private func open() async throws(SinkError) -> StreamConnection {
        if let connection, connection.isOpen { return connection }
        await drop()
        let connection = try await StreamConnection.open(address, tls: tls, timeout: timeout)
        self.connection = connection
        transaction = 1
        try await connection.write(RELPFrame(transaction: 1, command: "open", data: Array(Self.offers.utf8)).bytes)
        let answer = try await answer(to: 1, on: connection)
        guard answer.status == 200 else {
            throw SinkError("the receiver at \(connection.peer) refused the RELP session: \(answer.text)", kind: .needsOperator)
        }
        guard answer.text.contains("syslog") else {
            throw SinkError("the receiver at \(connection.peer) does not offer the RELP syslog command (\(answer.text))", kind: .needsOperator)
        }
        return connection
    }

    /// Reads until the `rsp` for `number` arrives.
    private func answer(to number: Int, on connection: StreamConnection) async throws(SinkError) -> RELPFrame {
        while true {
            do {
                while let frame = try RELPFrame.parse(&received) {
                    if frame.command == "serverclose" {
                        throw SinkError("the receiver at \(connection.peer) is closing the session (serverclose)")
                    }
                    guard frame.command == "rsp", frame.transaction == number else {
                        throw SinkError("the receiver at \(connection.peer) answered \(frame.command) \(frame.transaction), expected rsp \(number)")
                    }
                    return frame
                }
            } catch let error as RELPFrame.ParseError {
                throw SinkError("\(error) at \(connection.peer)")
            } catch let error as SinkError {
                throw error
            } catch {
                throw SinkError("\(error)")
            }
            let bytes = try await connection.read()
            received += bytes.readableBytesView
        }
    }

    private func drop() async {
        await connection?.close()
        connection = nil
        received = []
    }

    /// Ends the session politely (`close`, answered by `rsp`), then the connection.
    func shutdown() async {
        if let connection, connection.isOpen {
            transaction = RELPFrame.next(after: transaction)
            let number = transaction
            if (try? await connection.write(RELPFrame(transaction: number, command: "close", data: []).bytes)) != nil {
                _ = try? await answer(to: number, on: connection)
            }
        }
        await drop()
    }
}
