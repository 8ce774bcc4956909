import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization
import Timekeeping

/// The process-wide HTTP client: AsyncHTTPClient with TLS verification always on (plus an
/// optional extra CA file), connect and read timeouts, an overall deadline per call, gzip and
/// deflate (inflated by ``ContentDecoding``), a proxy from the configuration or `HTTPS_PROXY`/`NO_PROXY`, and
/// `User-Agent: defender-alertd/<version>`. Call ``shutdown()`` once, when the daemon stops.
public final class DefenderHTTPClient: HTTPTransport {
    /// Settings of the client.
    public struct Settings: Sendable {
        /// An extra PEM CA bundle trusted in addition to the system's roots.
        public var caFile: String?
        public var proxy: ProxySettings
        public var connectTimeout: Duration = .seconds(10)
        public var readTimeout: Duration = .seconds(60)
        /// Largest response body accepted (after decompression): ``maximumResponseSize``.
        public var maximumBodySize = DefenderHTTPClient.maximumResponseSize
        /// Connections kept open to one host (Entra ID's, the API's): a daemon polling thousands
        /// of tenants sends them all to one API host, and each poll waits for a free one.
        /// AsyncHTTPClient's default of 8 carries 8 requests at a time: at 0.5 s an answer, 960
        /// polls a minute, a tenth of 10,000 tenants.
        public var connectionsPerHost = 128
        /// In a group: this daemon's name, added to `User-Agent` so that a server's log tells
        /// the members apart.
        public var instance: String?

        public init(caFile: String? = nil, proxy: ProxySettings = ProxySettings(server: nil)) {
            self.caFile = caFile
            self.proxy = proxy
        }
    }

    private let direct: HTTPClient
    private let proxied: HTTPClient?
    private let settings: Settings
    private let shutDown = Mutex(false)
    /// The largest answer accepted, once inflated: 128 MiB. A page of 10,000 alerts with
    /// evidence, the most the API returns at once, measured 27.5 MB (2.9 KB an alert, about two
    /// evidence entities each); this leaves room for 4.6 times that. A larger answer is refused
    /// as it arrives, before it is kept whole (a 200 MB body once took 11 GB of memory).
    public static let maximumResponseSize = 128 * 1024 * 1024
    /// `defender-alertd/<version>`.
    public static let userAgent = "\(ProductInfo.name)/\(ProductInfo.version)"

    /// Creates the client; fails when the CA file cannot be read.
    public init(settings: Settings) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .fullVerification
        if let caFile = settings.caFile {
            tls.additionalTrustRoots = [.certificates(try NIOSSLCertificate.fromPEMFile(caFile))]
        }
        func configuration(proxy: HTTPClient.Configuration.Proxy?) -> HTTPClient.Configuration {
            var configuration = HTTPClient.Configuration(
                tlsConfiguration: tls,
                redirectConfiguration: .disallow,
                timeout: .init(
                    connect: .nanoseconds(settings.connectTimeout.totalNanoseconds), read: .nanoseconds(settings.readTimeout.totalNanoseconds)),
                proxy: proxy,
                // Bodies are inflated whole by ContentDecoding, not streamed through zlib.
                decompression: .disabled
            )
            configuration.httpVersion = .http1Only
            configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: settings.connectionsPerHost)
            return configuration
        }
        direct = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration(proxy: nil))
        proxied = settings.proxy.server.map { server in
            let authorization = server.username.map { user in
                HTTPClient.Authorization.basic(username: user, password: server.password?.withValue { $0 } ?? "")
            }
            return HTTPClient(
                eventLoopGroupProvider: .singleton,
                configuration: configuration(proxy: .server(host: server.host, port: server.port, authorization: authorization)))
        }
        self.settings = settings
    }

    public func send(_ request: HTTPExchangeRequest, deadline: Duration) async throws(TransportError) -> HTTPExchangeResponse {
        // AsyncHTTPClient's deadline ends with the response head; a body that stalls after the
        // headers would wait for the read timeout. A timer on the event loop (no thread of its
        // own, no Dispatch timer: a daemon of 10,000 tenants sends 167 requests a second)
        // cancels the whole exchange when the deadline passes.
        let expired = ExpiryFlag()
        let exchange = Task { try await self.perform(request, deadline: deadline) }
        let timer = direct.eventLoopGroup.any().scheduleTask(in: .nanoseconds(deadline.totalNanoseconds)) {
            expired.set()
            exchange.cancel()
        }
        defer { timer.cancel() }
        let result = await withTaskCancellationHandler {
            await exchange.result
        } onCancel: {
            exchange.cancel()
        }
        if expired.isSet { throw .timedOut("no complete answer within \(deadline)") }
        switch result {
        case .success(let response): return response
        case .failure(let error as TransportError): throw error
        case .failure(let error): throw .connection(SecretRedaction.redact(String(describing: error)))
        }
    }

    private func perform(_ request: HTTPExchangeRequest, deadline: Duration) async throws(TransportError) -> HTTPExchangeResponse {
        var outgoing = HTTPClientRequest(url: request.url)
        outgoing.method = HTTPMethod(rawValue: request.method)
        outgoing.headers.add(name: "User-Agent", value: settings.instance.map { "\(Self.userAgent) (member \($0))" } ?? Self.userAgent)
        outgoing.headers.add(name: "Accept-Encoding", value: "gzip, deflate")
        for (name, value) in request.headers { outgoing.headers.add(name: name, value: value) }
        if let bearer = request.bearer {
            bearer.withValue { outgoing.headers.add(name: "Authorization", value: "Bearer " + $0) }
        }
        if let authorization = request.authorization {
            authorization.withValue { outgoing.headers.add(name: "Authorization", value: $0) }
        }
        if let body = request.body {
            outgoing.body = .bytes(body.withValue { ByteBuffer(string: $0) })
        } else if let bytes = request.bytes {
            outgoing.body = .bytes(ByteBuffer(bytes: bytes))
        }
        let host = URLComponents(string: request.url)?.host ?? ""
        let client = settings.proxy.usesProxy(for: host) ? (proxied ?? direct) : direct
        let nioDeadline = NIODeadline.now() + .nanoseconds(deadline.totalNanoseconds)
        do {
            let response = try await client.execute(outgoing, deadline: nioDeadline)
            let body = try await response.body.collect(upTo: settings.maximumBodySize)
            let decoded = try body.withUnsafeReadableBytes { bytes throws(TransportError) in
                try ContentDecoding.decode(
                    bytes, encoding: response.headers.first(name: "Content-Encoding"),
                    limit: settings.maximumBodySize)
            }
            return HTTPExchangeResponse(
                status: Int(response.status.code),
                headers: response.headers.map { ($0.name, $0.value) },
                body: decoded
            )
        } catch let error as TransportError {
            throw error
        } catch let error as HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout, .getConnectionFromPoolTimeout:
                throw .timedOut(SecretRedaction.redact(String(describing: error)))
            default:
                throw .connection(SecretRedaction.redact(String(describing: error)))
            }
        } catch is NIOTooManyBytesError {
            throw .bodyTooLarge(settings.maximumBodySize)
        } catch {
            throw .connection(SecretRedaction.redact(String(describing: error)))
        }
    }

    /// What is wrong with a CA file, or `nil` when it holds at least one PEM certificate.
    public static func checkCAFile(_ path: String) -> String? {
        guard FileManager.default.isReadableFile(atPath: path) else {
            return FileManager.default.fileExists(atPath: path) ? "\(path) cannot be read" : "\(path) does not exist"
        }
        do {
            let certificates = try NIOSSLCertificate.fromPEMFile(path)
            return certificates.isEmpty ? "\(path) holds no PEM certificate" : nil
        } catch {
            return "\(path) is not a PEM certificate bundle (\(error))"
        }
    }

    /// Closes every connection. Call once, at the end.
    public func shutdown() async {
        shutDown.withLock { $0 = true }
        try? await direct.shutdown()
        try? await proxied?.shutdown()
    }

    /// A client dropped without `shutdown()` (a sink of a failed setup) closes its
    /// connections in the background instead of trapping in AsyncHTTPClient's deinit.
    deinit {
        guard !shutDown.withLock({ $0 }) else { return }
        _ = direct.shutdown()
        _ = proxied?.shutdown()
    }
}

/// Set once, by the timer that ends an exchange at its deadline.
private final class ExpiryFlag: Sendable {
    private let value = Atomic(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
