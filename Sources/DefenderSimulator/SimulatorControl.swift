import Foundation
import OrderedJSON
import Timekeeping

/// The control API, on the same listener under `/_simulator/` (a path the real API does not
/// use): add and update alerts, set faults, scenarios and the order of results, register apps, revoke tokens, move
/// the clock, and read counters. Bodies are JSON; answers are JSON.
extension SimulatedDefender {
    /// First path segment of the control API.
    public static let controlPrefix = "_simulator"

    func control(_ request: SimulatorRequest, segments: [String]) -> SimulatorResponse {
        do {
            return try routeControl(request, segments: segments)
        } catch {
            return .json(400, .object([("error", .string(error.description))]))
        }
    }

    private func routeControl(_ request: SimulatorRequest, segments: [String]) throws(SimulatorSetupError) -> SimulatorResponse {
        let body = request.body.isEmpty ? JSONValue.object([]) : try Self.parse(request.body)
        switch (request.method, segments) {
        case ("GET", ["counters"]):
            return .json(200, try Self.encode(counterSnapshot))
        case ("GET", ["pollers"]):
            return .json(200, .object([("runs", try Self.encode(pollers))]))
        case ("GET", ["alerts"]):
            return .json(200, .object([("value", .array(allAlerts()))]))
        case ("GET", ["alerts", "count"]):
            // Cheap at any size: the scenario's arrivals so far, without their bodies.
            return .json(200, .object([("count", .int(alertCount()))]))
        case ("POST", ["alerts"]):
            return .json(201, .object([("ids", .array(try postAlerts(body).map { .string($0) }))]))
        case ("POST", let path) where path.count == 2 && path[0] == "alerts":
            var changes: [(String, JSONValue)] = []
            if case .object(let members)? = body["changes"] { changes = members }
            let time = body["lastUpdateTime"]?.stringValue.flatMap { Timestamp(parsing: $0) }
            let updated = try updateAlert(id: path[1], changes: changes, at: time, visibleAfter: Self.double(body["visibleAfterSeconds"]) ?? 0)
            return .json(200, updated)
        case ("POST", ["faults"]):
            try addFault(try Self.decode(Fault.self, from: request.body))
            return Self.created
        case ("POST", ["order"]):
            guard let text = body["order"]?.stringValue, let order = ResultOrder(rawValue: text) else {
                throw SimulatorSetupError("expected {\"order\": \"\(ResultOrder.allCases.map(\.rawValue).joined(separator: "|"))\"}")
            }
            setResultOrder(order)
            return Self.ok
        case ("DELETE", ["faults"]):
            clearFaults()
            return Self.ok
        case ("POST", ["tokens", "revoke"]):
            revokeTokens()
            return Self.ok
        case ("POST", ["scenario"]):
            try setScenario(try Self.decode(Scenario.self, from: request.body))
            return Self.ok
        case ("POST", ["apps"]):
            try register(try Self.app(body))
            return Self.created
        case ("POST", ["users"]):
            try add(try Self.user(body))
            return Self.created
        case ("POST", ["users", "revoke"]):
            guard let upn = body["userPrincipalName"]?.stringValue else { throw SimulatorSetupError("expected {\"userPrincipalName\": ...}") }
            try revokeUser(upn)
            return Self.ok
        case ("POST", ["devicecode", "approve"]), ("POST", ["devicecode", "decline"]):
            guard let code = body["userCode"]?.stringValue else { throw SimulatorSetupError("expected {\"userCode\": ...}") }
            let user = body["userPrincipalName"]?.stringValue
            if segments[1] == "approve", user == nil { throw SimulatorSetupError("approving needs userPrincipalName") }
            try decideDeviceCode(code, user: segments[1] == "approve" ? user : nil)
            return Self.ok
        case ("POST", ["devicecode", "slow-down"]):
            setDeviceCodeSlowDown(body["on"] != .bool(false))
            return Self.ok
        case ("POST", ["devicecode", "answer"]):
            // {"message": "...", "verificationUri": "..."}; either left out: Entra ID's own.
            setDeviceCodeAnswer(message: body["message"]?.stringValue, verificationURI: body["verificationUri"]?.stringValue)
            return Self.ok
        case ("POST", ["users", "refresh-failure"]):
            try refuseRefreshes(body)
            return Self.ok
        case ("POST", ["clock", "advance"]):
            guard let seconds = Self.double(body["seconds"]), seconds >= 0 else { throw SimulatorSetupError("seconds must be a non-negative number") }
            clock.advance(seconds: seconds)
            return .json(200, .object([("now", .string(clock.now().description))]))
        default:
            return .json(
                404, .object([("error", .string("no control endpoint \(request.method) /\(Self.controlPrefix)/\(segments.joined(separator: "/"))"))]))
        }
    }

    private static let ok = SimulatorResponse.json(200, .object([("ok", .bool(true))]))
    private static let created = SimulatorResponse.json(201, .object([("ok", .bool(true))]))

    /// `POST /_simulator/users/refresh-failure`: `{"userPrincipalName": ..., "code": 50076,
    /// "error": "interaction_required"}`; no code: refreshes work again.
    private func refuseRefreshes(_ body: JSONValue) throws(SimulatorSetupError) {
        guard let upn = body["userPrincipalName"]?.stringValue else {
            throw SimulatorSetupError("expected {\"userPrincipalName\": ..., \"code\": ...}")
        }
        var code: EntraErrorCode?
        if let number = Self.double(body["code"]) {
            guard let value = Int(exactly: number), let known = EntraErrorCode(rawValue: value) else {
                throw SimulatorSetupError("code \(number) is not a code the simulator sends")
            }
            code = known
        }
        try refuseRefreshes(of: upn, code: code, error: body["error"]?.stringValue)
    }

    /// `POST /_simulator/alerts`: the alerts given (`alerts`), or `count` generated (MDE's, or
    /// Graph's of another `serviceSource`), visible `visibleAfterSeconds` after their time.
    private func postAlerts(_ body: JSONValue) throws(SimulatorSetupError) -> [String] {
        let visibleAfter = Self.double(body["visibleAfterSeconds"]) ?? 0
        if case .array(let objects)? = body["alerts"] { return try addAlerts(objects, visibleAfter: visibleAfter) }
        let count = Int(Self.double(body["count"]) ?? 1)
        guard (1...100_000).contains(count) else { throw SimulatorSetupError("count must be 1...100000") }
        let time = try body["lastUpdateTime"]?.stringValue.map { text throws(SimulatorSetupError) in
            guard let time = Timestamp(parsing: text) else { throw SimulatorSetupError("lastUpdateTime \(text) is not ISO 8601") }
            return time
        }
        if let service = body["serviceSource"]?.stringValue, service != "microsoftDefenderForEndpoint" {
            return try generateGraphAlerts(count: count, serviceSource: service, lastUpdateTime: time, visibleAfter: visibleAfter)
        }
        return try generateAlerts(count: count, lastUpdateTime: time, visibleAfter: visibleAfter, severity: body["severity"]?.stringValue)
    }

    /// `POST /_simulator/apps`: an app registration (secret or certificate, roles, scopes).
    private static func app(_ body: JSONValue) throws(SimulatorSetupError) -> RegisteredApp {
        guard let tenant = body["tenantId"]?.stringValue, let client = body["clientId"]?.stringValue else {
            throw SimulatorSetupError("an app needs tenantId and clientId")
        }
        var certificates: [RegisteredCertificate] = []
        if let pem = body["certificatePem"]?.stringValue {
            do { certificates.append(try RegisteredCertificate(pem: pem)) } catch { throw SimulatorSetupError("certificatePem: \(error)") }
        }
        var app = RegisteredApp(
            tenantID: tenant, clientID: client, secrets: body["secret"]?.stringValue.map { [$0] } ?? [],
            certificates: certificates)
        if case .array(let roles)? = body["roles"] { app.roles = roles.compactMap(\.stringValue) }
        if case .array(let roles)? = body["graphRoles"] { app.graphRoles = roles.compactMap(\.stringValue) }
        if case .bool(let isPublic)? = body["isPublicClient"] { app.isPublicClient = isPublic }
        if case .array(let scopes)? = body["delegatedScopes"] { app.delegatedScopes = scopes.compactMap(\.stringValue) }
        if case .array(let scopes)? = body["graphDelegatedScopes"] { app.graphDelegatedScopes = scopes.compactMap(\.stringValue) }
        return app
    }

    /// `POST /_simulator/users`: a user who can sign in with the device code flow.
    private static func user(_ body: JSONValue) throws(SimulatorSetupError) -> SimulatedUser {
        guard let upn = body["userPrincipalName"]?.stringValue else { throw SimulatorSetupError("a user needs userPrincipalName") }
        var groups: [String]?
        if case .array(let values)? = body["deviceGroups"] { groups = values.compactMap(\.stringValue) }
        return SimulatedUser(
            tenantID: body["tenantId"]?.stringValue ?? SimulatorConfiguration.defaultTenant.id, userPrincipalName: upn,
            displayName: body["displayName"]?.stringValue, deviceGroups: groups)
    }

    private static func parse(_ data: Data) throws(SimulatorSetupError) -> JSONValue {
        do { return try JSONValue(parsing: data) } catch { throw SimulatorSetupError("body: \(error)") }
    }

    private static func double(_ value: JSONValue?) -> Double? {
        guard case .number(let text)? = value else { return nil }
        return Double(text)
    }

    private static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(SimulatorSetupError) -> T {
        do { return try JSONDecoder().decode(type, from: data) } catch { throw SimulatorSetupError("body: \(error)") }
    }

    private static func encode<T: Encodable>(_ value: T) throws(SimulatorSetupError) -> JSONValue {
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            return try JSONValue(parsing: encoder.encode(value))
        } catch { throw SimulatorSetupError("cannot encode: \(error)") }
    }
}
