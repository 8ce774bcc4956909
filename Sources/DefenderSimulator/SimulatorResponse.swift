import Foundation
import OrderedJSON
import Timekeeping

/// What the simulator answers, independent of the HTTP server that sends it.
public struct SimulatorResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: Data

    public init(status: Int, headers: [(String, String)] = [], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON body with the given content type.
    public static func json(
        _ status: Int, _ value: JSONValue, contentType: String = "application/json; charset=utf-8",
        headers: [(String, String)] = []
    ) -> SimulatorResponse {
        SimulatorResponse(status: status, headers: [("Content-Type", contentType)] + headers, body: value.data)
    }

    /// The Defender API error shape `{"error": {"code", "message", "target"}}`.
    public static func apiError(_ status: Int, code: String, message: String, headers: [(String, String)] = []) -> SimulatorResponse {
        json(
            status,
            .object([
                (
                    "error",
                    .object([
                        ("code", .string(code)), ("message", .string(message)), ("target", .string(UUID().uuidString.lowercased())),
                    ])
                )
            ]), headers: headers)
    }

    /// The Microsoft Graph error shape `{"error": {"code", "message", "innerError": {"date",
    /// "request-id", "client-request-id"}}}` [GE], `docs/microsoft-apis.md` §6.
    public static func graphError(
        _ status: Int, code: String, message: String, headers: [(String, String)] = [],
        now: Date = Date()
    ) -> SimulatorResponse {
        let id = UUID().uuidString.lowercased()
        return json(
            status,
            .object([
                (
                    "error",
                    .object([
                        ("code", .string(code)), ("message", .string(message)),
                        (
                            "innerError",
                            .object([
                                ("date", .string(Timestamp(now).writtenWith(0).description)), ("request-id", .string(id)),
                                ("client-request-id", .string(id)),
                            ])
                        ),
                    ])
                )
            ]), headers: headers + [("request-id", id), ("client-request-id", id)])
    }

    /// This response with an MDE-shaped error body (``apiError(_:code:message:headers:)``)
    /// reshaped as Graph's; any other response as it is.
    func graphShaped() -> SimulatorResponse {
        guard status >= 400, let body = try? JSONValue(parsing: body), let error = body["error"],
            let code = error["code"]?.stringValue, let message = error["message"]?.stringValue, error["target"] != nil
        else { return self }
        return .graphError(status, code: code, message: message, headers: headers.filter { $0.0.lowercased() != "content-type" })
    }

    /// The value of a header (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// An incoming request, as the simulator's logic sees it.
public struct SimulatorRequest: Sendable {
    public var method: String
    /// The path without the query.
    public var path: String
    /// The raw query string (after `?`), still percent-encoded.
    public var query: String
    public var headers: [(String, String)]
    public var body: Data
    /// `scheme://host[:port]` as the client addressed the simulator.
    public var baseURL: String
    /// When the request arrived (its head was read), on the simulator's clock; `nil`: when it
    /// is handled.
    public var arrivedAt: Timestamp?

    public init(
        method: String, path: String, query: String = "", headers: [(String, String)] = [], body: Data = Data(), baseURL: String,
        arrivedAt: Timestamp? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.baseURL = baseURL
        self.arrivedAt = arrivedAt
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// The body as an `application/x-www-form-urlencoded` form; repeated keys keep the first value.
    public var form: [String: String] {
        var result: [String: String] = [:]
        for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = parts[0].replacingOccurrences(of: "+", with: " ").removingPercentEncoding else { continue }
            let value = (parts.count > 1 ? String(parts[1]) : "").replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            if result[key] == nil { result[key] = value }
        }
        return result
    }
}
