import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle
import Systemd
import Telemetry
import Timekeeping

/// Serves `GET /metrics` (Prometheus text, or OpenMetrics when `Accept` asks for it) and
/// `GET /healthz`, `/healthz/live` and `/healthz/ready` (200 or 503 with a JSON body,
/// ``HealthReport``) on `metrics_listen`.
///
/// An address it cannot listen on (a port in use, a socket path it may not create) is a
/// runtime error, never a crash and never a reason to stop forwarding: it is logged, shown in
/// `STATUS=`, and tried again every 30 seconds.
///
/// Whoever can reach the address cannot take the descriptors the pipeline needs (``Limits``):
/// at most 64 connections are open at once (swift-nio accepts up to 4 per read of the
/// listening socket, so 3 more at worst; further ones wait in the kernel's listen queue, which
/// holds no descriptor of this process, until one closes); a connection that sends no
/// complete request head for 10 seconds (after it opened, or after its last answer) is
/// closed, and any connection is closed 30 seconds after it opened, whatever it is doing (a
/// body or an answer trickling a byte at a time).
public struct MetricsServer: Service, CustomStringConvertible {
    private let address: ListenAddress
    private let telemetry: Telemetry
    private let beforeScrape: @Sendable () async -> Void
    private let health: @Sendable () -> HealthReport
    private let status: StatusLine
    private let clock: MonotonicClock
    private let limits: Limits
    private let logger: Logger
    private let onReady: @Sendable (String) -> Void

    static let retryInterval: Duration = .seconds(30)

    /// How much of the process one client of the endpoint can hold. A scrape is one short
    /// request (Prometheus's default `scrape_timeout` is 10 s), so the bounds are far above
    /// what scrapers need and far below the descriptors the daemon has (``DescriptorLimit``).
    struct Limits: Sendable {
        /// Connections open at once; further ones are not accepted until one closes.
        var connections = 64
        /// A connection that has not sent a complete request head this long after it opened
        /// (or after its last answer) is closed.
        var idleTimeout: Duration = .seconds(10)
        /// A connection is closed this long after it opened, whatever it is doing.
        var lifetime: Duration = .seconds(30)
        /// Connections the kernel queues (handshake done) while `connections` are open.
        var backlog = 128
    }

    /// `beforeScrape` brings the gauges up to date; `onReady` hears the address served (with
    /// the port chosen when it was 0).
    public init(
        address: ListenAddress, telemetry: Telemetry, beforeScrape: @escaping @Sendable () async -> Void,
        health: @escaping @Sendable () -> HealthReport, status: StatusLine, clock: MonotonicClock = .continuous, logger: Logger,
        onReady: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.init(
            address: address, telemetry: telemetry, beforeScrape: beforeScrape, health: health, status: status, clock: clock,
            limits: Limits(), logger: logger, onReady: onReady)
    }

    /// The same with other ``Limits`` (tests: short timeouts, a small cap).
    init(
        address: ListenAddress, telemetry: Telemetry, beforeScrape: @escaping @Sendable () async -> Void,
        health: @escaping @Sendable () -> HealthReport, status: StatusLine, clock: MonotonicClock = .continuous, limits: Limits, logger: Logger,
        onReady: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.address = address
        self.telemetry = telemetry
        self.beforeScrape = beforeScrape
        self.health = health
        self.status = status
        self.clock = clock
        self.limits = limits
        self.logger = logger
        self.onReady = onReady
    }

    public var description: String { "MetricsServer" }

    public func run() async throws {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                try await serve()
                return
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { return }
                // NIO says `bind(descriptor:ptr:bytes:): Address already in use (errno: 98)`.
                let reason = (error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? String("\(error)".prefix(80))
                logger.error(
                    "cannot serve metrics on metrics_listen \(address): \(reason); alerts are forwarded as usual; trying again in \(Self.retryInterval.components.seconds)s",
                    metadata: ["metrics_listen": "\(address)", "error": "\(error)"])
                status.set("metrics", "metrics NOT SERVED (\(address): \(reason))")
                do { try await cancelWhenGracefulShutdown { try await clock.sleep(Self.retryInterval) } } catch { return }
            }
        }
    }

    private func serve() async throws {
        let bind: BindAddress
        switch address {
        case .tcp(let host, let port):
            bind = .hostname(host, port: port)
        case .unix(let path):
            // A socket left by an earlier run is replaced; any other file is not touched.
            var info = stat()
            if lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
            bind = .unixDomainSocket(path: path)
        }
        let (telemetry, beforeScrape, health) = (self.telemetry, self.beforeScrape, self.health)
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            await Self.respond(to: request, telemetry: telemetry, beforeScrape: beforeScrape, health: health)
        }
        let (address, status, logger, onReady) = (self.address, self.status, self.logger, self.onReady)
        let lifetime = TimeAmount(limits.lifetime)
        let app = Application(
            responder: responder,
            // Hummingbird's idle timeout counts from the connection's start and from each
            // answer until a complete request part arrives (bytes of a head that never ends
            // do not count); the lifetime handler bounds the rest.
            server: .http1(
                configuration: .init(
                    additionalChannelHandlers: [ConnectionLifetimeHandler(lifetime: lifetime)],
                    idleTimeout: TimeAmount(limits.idleTimeout))),
            // Over the cap, the listening socket is not read (accept(2) is not called) until a
            // connection closes: a waiting client holds a slot of the kernel's queue, not a
            // descriptor of ours.
            configuration: .init(
                address: bind, serverName: "defender-alertd", backlog: limits.backlog,
                availableConnectionsDelegate: MaximumAvailableConnections(limits.connections, logger: logger)),
            onServerRunning: { channel in
                var served = "\(address)"
                if case .tcp(let host, _) = address, let port = channel.localAddress?.port {
                    served = "\(ListenAddress.tcp(host: host, port: port))"
                }
                logger.notice("serving metrics at /metrics and health at /healthz", metadata: ["metrics_listen": "\(served)"])
                status.set("metrics", nil)
                onReady(served)
            },
            logger: logger
        )
        try await app.run()
    }

    static func respond(
        to request: Request, telemetry: Telemetry, beforeScrape: @Sendable () async -> Void,
        health: @Sendable () -> HealthReport
    ) async -> Response {
        guard request.method == .get || request.method == .head else {
            return text(.methodNotAllowed, "only GET\n", contentType: "text/plain; charset=utf-8", extra: [.allow: "GET, HEAD"])
        }
        switch request.uri.path {
        case "/metrics":
            await beforeScrape()
            let format = ExpositionFormat.negotiate(accept: request.headers[.accept])
            return text(.ok, telemetry.exposition(format), contentType: format.contentType)
        case let path:
            guard let probe = HealthReport.Probe(rawValue: path) else {
                let paths = "/metrics, /healthz, /healthz/live or /healthz/ready"
                return text(.notFound, "not found: try \(paths)\n", contentType: "text/plain; charset=utf-8")
            }
            let report = health()
            return text(report.passes(probe) ? .ok : .serviceUnavailable, report.json(for: probe) + "\n", contentType: "application/json")
        }
    }

    private static func text(_ status: HTTPResponse.Status, _ body: String, contentType: String, extra: HTTPFields = [:]) -> Response {
        var headers = extra
        headers[.contentType] = contentType
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Closes a connection of the metrics server `lifetime` after it became active, whatever it is
/// doing: the idle timeout does not end a request whose body trickles in, nor an answer the
/// client reads a byte at a time. It passes everything on untouched.
final class ConnectionLifetimeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let lifetime: TimeAmount
    private var deadline: Scheduled<Void>?

    init(lifetime: TimeAmount) {
        self.lifetime = lifetime
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stop()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard deadline == nil else { return }
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: lifetime) { channel.close(promise: nil) }
    }

    private func stop() {
        deadline?.cancel()
        deadline = nil
    }
}

@available(*, unavailable)
extension ConnectionLifetimeHandler: Sendable {}
