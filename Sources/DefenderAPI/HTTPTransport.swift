import Foundation

/// One HTTP request, independent of the client library.
public struct HTTPExchangeRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    /// The body; wrapped because form bodies carry secrets.
    public var body: Secret?
    /// A body that carries no secret (alerts sent to a sink), byte for byte.
    public var bytes: [UInt8]?
    /// An access token for `Authorization: Bearer`, added by the transport.
    public var bearer: Secret?
    /// A whole `Authorization` header value (`Splunk <token>`, `Basic ...`), added by the transport.
    public var authorization: Secret?

    public init(
        method: String, url: String, headers: [(String, String)] = [], body: Secret? = nil, bytes: [UInt8]? = nil,
        bearer: Secret? = nil, authorization: Secret? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.bytes = bytes
        self.bearer = bearer
        self.authorization = authorization
    }
}

/// One HTTP response.
public struct HTTPExchangeResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: Data

    public init(status: Int, headers: [(String, String)] = [], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A header's value (case-insensitive name).
    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// Why a request got no HTTP response at all.
public enum TransportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No answer within the deadline (connect, read or overall).
    case timedOut(String)
    /// Could not connect, TLS failed, the connection broke, or the body was cut off.
    case connection(String)
    /// The body was larger than the limit.
    case bodyTooLarge(Int)
    /// Not sent: the caller may not send it now (the daemon no longer holds the tenant).
    case withheld(String)

    public var description: String {
        switch self {
        case .timedOut(let detail): "timed out (\(detail))"
        case .connection(let detail): "connection failed: \(detail)"
        case .bodyTooLarge(let limit): "response body larger than \(limit / 1_048_576) MiB (\(limit) bytes), the most accepted"
        case .withheld(let reason): "not sent: \(reason)"
        }
    }
}

/// The HTTP seam: the daemon uses ``DefenderHTTPClient``; tests may count or script calls.
public protocol HTTPTransport: Sendable {
    /// Sends a request; the whole exchange (connect, send, receive the body) must finish
    /// within `deadline`.
    ///
    /// - Parameters:
    ///   - request: The method, URL, headers, credentials (never logged) and body.
    ///   - deadline: The longest the whole exchange may take, from now.
    /// - Returns: The answer, whatever its status (a 4xx or 5xx is an answer, not an error).
    /// - Throws: ``TransportError`` when no complete answer came (refused, reset, timed out,
    ///   too large, cancelled).
    func send(_ request: HTTPExchangeRequest, deadline: Duration) async throws(TransportError) -> HTTPExchangeResponse
}
