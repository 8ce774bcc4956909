import DefenderAPI
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import OrderedJSON
import Synchronization

/// Carries syslog messages to a receiver and says when they count as delivered.
protocol SyslogTransport: Sendable {
    /// Sends the messages in order; returns when the transport's confirmation rule holds
    /// (UDP: handed to the kernel; TCP/TLS: written on a connection that then stayed open a
    /// moment; RELP: every message answered by the receiver), with the messages the receiver
    /// refused for good (RELP: an answer other than `200`), by index, with its answer. A failure
    /// says how many messages, from the first, counted as delivered or refused before it.
    func send(_ messages: [[UInt8]]) async throws(SyslogSendFailure) -> [Int: String]
    func shutdown() async
}

/// A batch of messages that did not get through: why, and how far it got first.
struct SyslogSendFailure: Error {
    var error: SinkError
    /// Messages, from the first, that the receiver took or refused before the failure.
    var answered = 0
    /// Among those, the ones it refused for good, by index, with its answer.
    var refused: [Int: String] = [:]
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

    func send(_ messages: [[UInt8]]) async throws(SyslogSendFailure) -> [Int: String] {
        let channel: Channel
        do throws(SinkError) {
            channel = try await connected()
        } catch {
            throw SyslogSendFailure(error: error)
        }
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
            throw SyslogSendFailure(error: SinkError("sending to udp://\(host):\(port) failed: \(StreamConnection.describe(error))"))
        }
        return [:]
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
/// connection kept between batches. Nothing in the protocol says what the receiver read, so
/// what is written counts as delivered only once the connection stayed open for `settle`
/// afterwards: a receiver that closes or resets it as it reads (a restart, a crash, a limit of
/// messages per connection) has that part sent again on a new connection (duplicates, not
/// losses). After such a loss the batch is written in smaller parts, each confirmed on its own
/// (halved with each loss, down to one message; doubled again with each batch that goes through
/// whole), so a receiver that resets every N messages still gets everything. A reset found only
/// before the next batch (later than `settle`) may have lost what the receiver had not read of
/// the batches before: that is reported as a failure with `connectionLost` (logged by the worker,
/// counted in `defender_alertd_connection_losses_total`), and the batch goes on a new connection.
/// A connection the receiver closed cleanly (an idle timeout) is simply opened again.
actor StreamTransport: SyslogTransport {
    private let address: SyslogAddress
    private let framing: SyslogFraming
    private let tls: SyslogTLS?
    private let timeout: Duration
    private let settle: Duration
    private var connection: StreamConnection?
    /// Messages written before each check that the connection stayed open.
    private var part = Int.max

    init(address: SyslogAddress, framing: SyslogFraming, tls: SyslogTLS?, timeout: Duration, settle: Duration = .milliseconds(100)) {
        self.address = address
        self.framing = framing
        self.tls = tls
        self.timeout = timeout
        self.settle = settle
    }

    func send(_ messages: [[UInt8]]) async throws(SyslogSendFailure) -> [Int: String] {
        var confirmed = 0
        var writing = 0
        do throws(SinkError) {
            let connection = try await open()
            while confirmed < messages.count {
                writing = min(part, messages.count - confirmed)
                var bytes: [UInt8] = []
                for message in messages[confirmed..<confirmed + writing] { bytes += framing.frame(message) }
                do throws(SinkError) {
                    try await connection.write(bytes)
                } catch {
                    var error = error
                    error.connectionLost = connection.wasReset || connection.endedByReceiver
                    throw error
                }
                if await connection.ends(within: settle) {
                    throw SinkError(
                        "the receiver at \(connection.peer) \(connection.wasReset ? "reset" : "closed") the connection as alerts were written; "
                            + "those not yet confirmed are sent again on a new connection", connectionLost: true)
                }
                confirmed += writing
            }
        } catch {
            await drop()
            if error.connectionLost, writing > 0 { part = max(1, writing / 2) }
            throw SyslogSendFailure(error: error, answered: confirmed)
        }
        if part < Int.max { part = part >= messages.count ? Int.max : part * 2 }
        return [:]
    }

    private func open() async throws(SinkError) -> StreamConnection {
        if let connection {
            if connection.isOpen { return connection }
            let reset = connection.wasReset
            await drop()
            if reset {
                throw SinkError(
                    "the receiver at \(connection.peer) reset the connection after the last batch was confirmed: what it had not read of it is lost "
                        + "(plain TCP and TLS have no acknowledgements, a whole batch at most; use RELP where that matters); the next batch goes on a new connection",
                    connectionLost: true)
            }
        }
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

/// RELP: every message is a `syslog` command the receiver answers; `200 OK` confirms that
/// message, any other status refuses it (the specification: "200 is ok, all the rest
/// currently errors"), which makes it a dead letter while the rest go on. At most `window`
/// commands are outstanding (librelp's default window is 128). A session lost mid-batch
/// keeps what was answered before it (the worker confirms that part); the rest is sent again
/// on a new session.
///
/// Our own client rather than librelp (rsyslog's library, librelp.h): its client call
/// `relpCltSendSyslog` queues a message and reports no per-message answer to the caller (a
/// non-200 `rsp` only reaches an error callback, and unacknowledged messages are re-sent by
/// the library itself on reconnect), so neither a confirmed prefix nor a dead letter for one
/// refusal could be built on it; it would also bring blocking sockets, C callbacks and a
/// second TLS stack and trust configuration (GnuTLS or OpenSSL) next to SwiftNIO SSL's.
actor RELPTransport: SyslogTransport {
    private let address: SyslogAddress
    private let timeout: Duration
    private let window: Int
    private var connection: StreamConnection?
    private var received: [UInt8] = []
    private var transaction = 0

    /// Plain TCP: this sink speaks RELP without TLS (`relp://`; `tls://` is syslog over TLS).
    init(address: SyslogAddress, timeout: Duration, window: Int = 128) {
        self.address = address
        self.timeout = timeout
        self.window = max(1, window)
    }

    /// What the client offers when it opens a session.
    static var offers: String {
        "relp_version=0\nrelp_software=\(ProductInfo.name),\(ProductInfo.version),https://github.com/defender-alertd\ncommands=syslog"
    }

    func send(_ messages: [[UInt8]]) async throws(SyslogSendFailure) -> [Int: String] {
        var answered = 0
        var refused: [Int: String] = [:]
        do throws(SinkError) {
            let connection = try await open()
            while answered < messages.count {
                let chunk = answered..<min(answered + window, messages.count)
                var bytes: [UInt8] = []
                var expected: [Int] = []
                for index in chunk {
                    transaction = RELPFrame.next(after: transaction)
                    expected.append(transaction)
                    bytes += RELPFrame(transaction: transaction, command: "syslog", data: messages[index]).bytes
                }
                try await connection.write(bytes)
                for number in expected {
                    let answer = try await answer(to: number, on: connection)
                    guard answer.status != nil else {
                        throw SinkError(
                            "the receiver at \(connection.peer) answered a message without a status: \(PrintableText.escaped(answer.text))")
                    }
                    if answer.status != 200 { refused[answered] = PrintableText.escaped(answer.text) }
                    answered += 1
                }
            }
        } catch {
            var error = error
            if let connection, connection.endedByReceiver { error.connectionLost = true }
            await drop()
            throw SyslogSendFailure(error: error, answered: answered, refused: refused)
        }
        return refused
    }

    private func open() async throws(SinkError) -> StreamConnection {
        if let connection, connection.isOpen { return connection }
        await drop()
        let connection = try await StreamConnection.open(address, tls: nil, timeout: timeout)
        self.connection = connection
        transaction = 1
        try await connection.write(RELPFrame(transaction: 1, command: "open", data: Array(Self.offers.utf8)).bytes)
        let answer = try await answer(to: 1, on: connection)
        guard answer.status == 200 else {
            throw SinkError(
                "the receiver at \(connection.peer) refused the RELP session: \(PrintableText.escaped(answer.text))", kind: .needsOperator)
        }
        guard answer.text.contains("syslog") else {
            throw SinkError(
                "the receiver at \(connection.peer) does not offer the RELP syslog command (\(PrintableText.escaped(answer.text)))",
                kind: .needsOperator)
        }
        return connection
    }

    /// Reads until the `rsp` for `number` arrives.
    private func answer(to number: Int, on connection: StreamConnection) async throws(SinkError) -> RELPFrame {
        while true {
            do {
                while let frame = try RELPFrame.parse(&received) {
                    if frame.command == "serverclose" {
                        throw SinkError("the receiver at \(connection.peer) is closing the session (serverclose)", connectionLost: true)
                    }
                    guard frame.command == "rsp", frame.transaction == number else {
                        throw SinkError(
                            "the receiver at \(connection.peer) answered \(PrintableText.escaped(frame.command)) \(frame.transaction), expected rsp \(number)"
                        )
                    }
                    return frame
                }
            } catch let error as RELPFrame.ParseError {
                throw SinkError("\(PrintableText.escaped(error.description)) at \(connection.peer)")
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
