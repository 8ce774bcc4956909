import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization
import Timekeeping

/// One TCP connection to a syslog receiver, TLS-protected when a context is given: writes,
/// what the receiver sent back (RELP answers), and whether it is still open. Every wait has a
/// deadline: when it passes, the connection is closed and the wait fails.
actor StreamConnection {
    private let channel: Channel
    private var inbound: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator
    /// Set by a deadline that passed (on the event loop, hence shared).
    private let timedOut = ConnectionFlag()
    /// Set when this side closed the connection.
    private let closedHere = ConnectionFlag()
    /// Set when the receiver reset the connection (`ECONNRESET`, `EPIPE`): it threw away what
    /// it had not read.
    private let reset: ConnectionFlag
    let timeout: Duration
    /// `host:port`, for messages.
    nonisolated let peer: String
    /// The promise of the wait of ``ends(within:)`` under way, completed by the connection's
    /// one close callback: a callback added at every batch would stay until the connection
    /// closes (days, with a receiver that keeps it open).
    private let closeWatch = CloseWatch()

    private init(channel: Channel, inbound: AsyncThrowingStream<ByteBuffer, any Error>, reset: ConnectionFlag, timeout: Duration, peer: String) {
        self.channel = channel
        self.inbound = inbound.makeAsyncIterator()
        self.reset = reset
        self.timeout = timeout
        self.peer = peer
        channel.closeFuture.whenComplete { [closeWatch] _ in
            closeWatch.promise.withLock { $0.take() }?.succeed(true)
        }
    }

    /// Connects (and, with `tls`, completes the handshake, the receiver's certificate verified)
    /// within `timeout`.
    static func open(host: String, port: Int, tls: NIOSSLContext?, serverName: String?, timeout: Duration) async throws(SinkError) -> StreamConnection
    {
        let peer = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        // The initializer runs once per connection attempt (IPv6 and IPv4 may race): each
        // channel has its own handler, stream and handshake promise, found again by channel.
        let handlers = Mutex<[ObjectIdentifier: InboundHandler]>([:])
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.nanoseconds(timeout.totalNanoseconds))
            .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        let handler = try NIOSSLClientHandler(context: tls, serverHostname: Self.isIPAddress(serverName) ? nil : serverName)
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    let handler = InboundHandler(handshake: channel.eventLoop.makePromise(), needsTLS: tls != nil)
                    handlers.withLock { $0[ObjectIdentifier(channel)] = handler }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let channel: Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            throw SinkError("cannot connect to \(peer): \(Self.describe(error))")
        }
        let handler = handlers.withLock { $0[ObjectIdentifier(channel)]! }
        let connection = StreamConnection(channel: channel, inbound: handler.stream, reset: handler.reset, timeout: timeout, peer: peer)
        do {
            try await connection.withDeadline("the TLS handshake") { try await handler.handshake.futureResult.get() }
        } catch {
            await connection.close()
            throw error
        }
        return connection
    }

    /// Connects to `address`, with TLS when `tls` is given (checked for its `serverName`, by
    /// default the address's host).
    static func open(_ address: SyslogAddress, tls: SyslogTLS?, timeout: Duration) async throws(SinkError) -> StreamConnection {
        try await open(host: address.host, port: address.port, tls: try tls?.context(), serverName: tls?.serverName ?? address.host, timeout: timeout)
    }

    /// Still connected: the receiver has not closed it, no error or deadline broke it.
    nonisolated var isOpen: Bool { channel.isActive && !timedOut.isSet }

    /// The receiver ended the connection (closed or reset it), not a deadline or this side.
    nonisolated var endedByReceiver: Bool { !channel.isActive && !timedOut.isSet && !closedHere.isSet }

    /// The receiver reset the connection: what it had not read yet is gone.
    nonisolated var wasReset: Bool { reset.isSet }

    /// Whether the connection ends (the receiver closes or resets it, or it breaks) within
    /// `interval`; returns as soon as it does, or `false` once `interval` passed with the
    /// connection still open. Nothing is read or written meanwhile.
    func ends(within interval: Duration) async -> Bool {
        guard isOpen else { return true }
        let channel = self.channel
        let promise = channel.eventLoop.makePromise(of: Bool.self)
        // Both complete the promise on the channel's event loop; the first one wins.
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(interval.totalNanoseconds)) { promise.succeed(false) }
        closeWatch.promise.withLock { $0 = promise }
        // Closed before the watch was set: the callback found no promise.
        if !channel.isActive { promise.succeed(true) }
        let ended = (try? await promise.futureResult.get()) ?? true
        timer.cancel()
        closeWatch.promise.withLock { $0 = nil }
        return ended || !isOpen
    }

    /// Writes `bytes`; returns when the kernel has taken them all.
    func write(_ bytes: [UInt8]) async throws(SinkError) {
        let buffer = channel.allocator.buffer(bytes: bytes)
        try await withDeadline("writing") { try await self.channel.writeAndFlush(buffer).get() }
    }

    /// The next bytes the receiver sent; fails when it closed the connection.
    func read() async throws(SinkError) -> ByteBuffer {
        var iterator = inbound
        defer { inbound = iterator }
        return try await withDeadline("waiting for the receiver's answer") {
            guard let bytes = try await iterator.next() else { throw ChannelError.eof }
            return bytes
        }
    }

    func close() async {
        closedHere.set()
        try? await channel.close().get()
    }

    /// Runs `body`; if it takes longer than `timeout` the connection is closed, which ends it.
    private func withDeadline<T: Sendable>(_ what: String, _ body: () async throws -> T) async throws(SinkError) -> T {
        let (channel, timedOut) = (self.channel, self.timedOut)
        let deadline = channel.eventLoop.scheduleTask(in: .nanoseconds(timeout.totalNanoseconds)) {
            timedOut.set()
            channel.close(promise: nil)
        }
        defer { deadline.cancel() }
        do {
            return try await body()
        } catch {
            if Self.isReset(error) { reset.set() }
            if timedOut.isSet {
                throw SinkError("\(what) to \(peer) timed out after \(ConfigDuration.format(timeout))")
            }
            throw SinkError("\(what) to \(peer) failed: \(Self.describe(error))", kind: Self.kind(of: error))
        }
    }

    /// Whether `error` says the receiver reset the connection.
    static func isReset(_ error: any Error) -> Bool {
        guard let error = error as? IOError else { return false }
        return error.errnoCode == ECONNRESET || error.errnoCode == EPIPE
    }

    /// A certificate the receiver's or ours cannot be trusted needs a person; the rest may pass.
    static func kind(of error: any Error) -> SinkError.Kind {
        if error is NIOSSLExtraError { return .needsOperator }
        if let error = error as? NIOSSLError, case .handshakeFailed = error { return .needsOperator }
        return .retryable
    }

    /// A readable reason, with the certificate problem spelled out for TLS failures.
    static func describe(_ error: any Error) -> String {
        switch error {
        case ChannelError.eof, ChannelError.ioOnClosedChannel, ChannelError.alreadyClosed:
            return "the receiver closed the connection"
        case let error as NIOSSLExtraError:
            return "the receiver's certificate does not match its name (\(error)); set server_name to a name the certificate holds"
        case let error as NIOSSLError:
            if case .handshakeFailed(let reason) = error {
                let text = "\(reason)"
                if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate verify failed") {
                    return
                        "TLS handshake failed: the receiver's certificate is not trusted or not valid now (\(text)); check ca_file and the certificate's dates"
                }
                return "TLS handshake failed (\(text))"
            }
            return "TLS failed (\(error))"
        case let error as IOError:
            return String(cString: strerror(error.errnoCode))
        default:
            return "\(error)"
        }
    }

    static func isIPAddress(_ text: String?) -> Bool {
        guard let text else { return false }
        return (try? SocketAddress(ipAddress: text, port: 0)) != nil
    }
}

/// A flag set on the event loop and read from the connection's actor.
final class ConnectionFlag: Sendable {
    private let value = Mutex(false)

    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}

/// Hands what the receiver sends to the connection's stream; completes the handshake promise
/// when TLS is up (at once without TLS) and fails it when the connection breaks first or the
/// channel goes away without ever connecting.
private final class InboundHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    let stream: AsyncThrowingStream<ByteBuffer, any Error>
    private let continuation: AsyncThrowingStream<ByteBuffer, any Error>.Continuation
    let handshake: EventLoopPromise<Void>
    /// Set when a read failed because the receiver reset the connection.
    let reset = ConnectionFlag()
    private let needsTLS: Bool

    init(handshake: EventLoopPromise<Void>, needsTLS: Bool) {
        (stream, continuation) = AsyncThrowingStream.makeStream()
        self.handshake = handshake
        self.needsTLS = needsTLS
    }

    func channelActive(context: ChannelHandlerContext) {
        if !needsTLS { handshake.succeed() }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        continuation.yield(unwrapInboundIn(data))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event { handshake.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if StreamConnection.isReset(error) { reset.set() }
        handshake.fail(error)
        continuation.finish(throwing: error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshake.fail(ChannelError.eof)
        continuation.finish()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        handshake.fail(ChannelError.eof)
        continuation.finish()
    }
}

/// The promise a connection's one close callback completes (see `StreamConnection.ends(within:)`).
private final class CloseWatch: Sendable {
    let promise = Mutex<EventLoopPromise<Bool>?>(nil)
}
