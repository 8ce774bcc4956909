import CompressNIO
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTLS
import Logging
import NIOCore
import ServiceLifecycle

/// Serves a ``SimulatedDefender`` over HTTP or HTTPS on loopback.
public struct SimulatorServer: Service {
    private let simulator: SimulatedDefender
    private let host: String
    private let port: Int
    private let tls: SimulatorTLS?
    private let logger: Logger
    private let onReady: @Sendable (Int) async -> Void

    /// `host` must be a loopback address; `port` 0 picks a free port, reported to `onReady`.
    public init(
        simulator: SimulatedDefender, host: String = "127.0.0.1", port: Int = 0, tls: SimulatorTLS? = nil,
        logger: Logger = Logger(label: "defender-sim"), onReady: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws {
        guard host == "127.0.0.1" || host == "::1" || host == "localhost" || host.hasPrefix("127.") else {
            throw SimulatorSetupError("the simulator listens on loopback only, not on \(host)")
        }
        self.simulator = simulator
        self.host = host
        self.port = port
        self.tls = tls
        self.logger = logger
        self.onReady = onReady
    }

    public func run() async throws {
        let scheme = tls == nil ? "http" : "https"
        let simulator = self.simulator
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            // Before the body: a request counts from when it came, not from when it was read whole.
            let arrived = simulator.clock.now()
            let body = try await request.body.collect(upTo: 16 * 1024 * 1024)
            let hostHeader = request.head.authority ?? "127.0.0.1"
            let simulated = SimulatorRequest(
                method: request.method.rawValue, path: request.uri.path, query: request.uri.query ?? "",
                headers: request.headers.map { ($0.name.rawName, $0.value) }, body: Data(buffer: body),
                baseURL: "\(scheme)://\(hostHeader)", arrivedAt: arrived
            )
            let outcome = await simulator.handle(simulated)
            return Self.response(outcome, acceptEncoding: request.headers[.acceptEncoding])
        }
        let onReady = self.onReady
        let app = Application(
            responder: responder,
            server: try tls.map { try .tls(.http1(), tlsConfiguration: try $0.serverConfiguration()) } ?? .http1(),
            configuration: .init(address: .hostname(host, port: port), serverName: "defender-sim"),
            onServerRunning: { channel in await onReady(channel.localAddress?.port ?? 0) },
            logger: logger
        )
        try await app.run()
    }

    private static func response(_ outcome: SimulatorOutcome, acceptEncoding: String?) -> Response {
        var fields = HTTPFields()
        for (name, value) in outcome.response.headers {
            if let field = HTTPField.Name(name) { fields.append(HTTPField(name: field, value: value)) }
        }
        var bytes = ByteBuffer(data: outcome.response.body)
        if let encoding = preferredEncoding(acceptEncoding), !bytes.readableBytesView.isEmpty,
            let compressed = try? bytes.compress(with: encoding == "gzip" ? .gzip() : .zlib())
        {
            bytes = compressed
            fields[.contentEncoding] = encoding
            fields[.vary] = "Accept-Encoding"
        }
        let status = HTTPResponse.Status(code: outcome.response.status)
        switch outcome.delivery {
        case .normal:
            return Response(status: status, headers: fields, body: .init(byteBuffer: bytes))
        case .delayed(let delay):
            let payload = bytes
            return Response(
                status: status, headers: fields,
                body: .init(contentLength: payload.readableBytes) { writer in
                    try await Task.sleep(for: delay)
                    try await writer.write(payload)
                    try await writer.finish(nil)
                })
        case .stall:
            return Response(
                status: status, headers: fields,
                body: .init { _ in
                    // Headers are out; the body never comes. Ends when the server stops.
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(86_400)) }
                })
        case .truncated:
            let half = bytes.getSlice(at: bytes.readerIndex, length: bytes.readableBytes / 2) ?? ByteBuffer()
            let full = bytes.readableBytes
            return Response(
                status: status, headers: fields,
                body: .init(contentLength: full) { writer in
                    try await writer.write(half)
                    throw SimulatorSetupError("simulated truncated body")
                })
        }
    }

    /// `gzip` or `deflate` when the client accepts it (q=0 excluded), preferring gzip.
    static func preferredEncoding(_ header: String?) -> String? {
        guard let header else { return nil }
        let accepted = header.lowercased().split(separator: ",").compactMap { item -> String? in
            let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.dropFirst().contains(where: { $0 == "q=0" || $0 == "q=0.0" || $0 == "q=0.00" || $0 == "q=0.000" }) { return nil }
            return parts.first
        }
        if accepted.contains("gzip") { return "gzip" }
        if accepted.contains("deflate") { return "deflate" }
        return nil
    }
}
