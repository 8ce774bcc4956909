import DefenderSimulator
import Foundation
import OrderedJSON
import Testing
import Timekeeping

/// An in-process simulator on a manual clock, with helpers to call it like a client would.
struct SimulatorHarness {
    static let tenant = "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35"
    static let client = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
    static let secret = "harness-secret-value"
    static let base = "http://127.0.0.1:8080"
    static let start = Timestamp(parsing: "2025-03-14T10:00:00Z")!

    let simulator: SimulatedDefender
    let clock: SimulatorClock

    init(configure: (inout SimulatorConfiguration) throws -> Void = { _ in }) throws {
        var configuration = SimulatorConfiguration()
        configuration.apps = [RegisteredApp(tenantID: Self.tenant, clientID: Self.client, secrets: [Self.secret])]
        try configure(&configuration)
        clock = SimulatorClock.manual(start: Self.start)
        simulator = try SimulatedDefender(configuration: configuration, clock: clock)
    }

    static func form(_ fields: [String: String]) -> Data {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return Data(
            fields.sorted { $0.key < $1.key }.map {
                "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed)!)"
            }.joined(separator: "&").utf8)
    }

    /// POSTs a form to a token endpoint.
    func token(_ version: TokenEndpointVersion = .v2, tenant: String = tenant, fields: [String: String]) async -> SimulatorResponse {
        let path = version == .v1 ? "/\(tenant)/oauth2/token" : "/\(tenant)/oauth2/v2.0/token"
        return await simulator.handle(
            SimulatorRequest(
                method: "POST", path: path, headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: Self.form(fields), baseURL: Self.base)
        ).response
    }

    /// The standard v2 client-secret request, with overrides.
    func secretToken(_ overrides: [String: String] = [:]) async -> SimulatorResponse {
        var fields = [
            "grant_type": "client_credentials", "client_id": Self.client, "client_secret": Self.secret,
            "scope": "https://api.securitycenter.microsoft.com/.default",
        ]
        fields.merge(overrides) { _, new in new }
        return await token(.v2, fields: fields)
    }

    /// A valid access token.
    func accessToken() async throws -> String {
        let response = await secretToken()
        let body = try JSONValue(parsing: response.body)
        return try #require(body["access_token"]?.stringValue, "no token: \(String(decoding: response.body, as: UTF8.self))")
    }

    /// `GET path?query` with a bearer token.
    func get(_ path: String = "/api/alerts", query: String = "", token: String?, headers: [(String, String)] = []) async -> SimulatorOutcome {
        var allHeaders = headers
        if let token { allHeaders.append(("Authorization", "Bearer \(token)")) }
        return await simulator.handle(SimulatorRequest(method: "GET", path: path, query: query, headers: allHeaders, baseURL: Self.base))
    }

    /// The alerts of a successful page.
    func alerts(query: String, token: String) async throws -> [JSONValue] {
        let outcome = await get(query: query, token: token)
        #expect(outcome.response.status == 200, "\(String(decoding: outcome.response.body, as: UTF8.self))")
        guard case .array(let values)? = try JSONValue(parsing: outcome.response.body)["value"] else {
            Issue.record("no value array")
            return []
        }
        return values
    }

    /// `$filter` query text, percent-encoded like a client would.
    static func filter(_ expression: String, extra: String = "") -> String {
        "$filter=" + expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics)! + extra
    }

    /// A fixture from Tests/Fixtures.
    static func fixture(_ name: String) throws -> JSONValue {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return try JSONValue(parsing: Data(contentsOf: url.appendingPathComponent("Fixtures/\(name)")))
    }

    /// The decoded claims of a JWT.
    static func claims(_ token: String) throws -> JSONValue {
        let part = token.split(separator: ".")[1]
        var base64 = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return try JSONValue(parsing: try #require(Data(base64Encoded: base64)))
    }
}

extension JSONValue {
    /// A crude type tag for shape comparisons.
    var kind: String {
        switch self {
        case .null: "null"
        case .bool: "bool"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}
