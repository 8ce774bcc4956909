import Foundation
import OrderedJSON
import Timekeeping

/// Everything the simulator starts with.
public struct SimulatorConfiguration: Sendable {
    /// Seed of every random choice (alerts, fault probabilities).
    public var seed: UInt64 = 1
    public var tenants: [SimulatedTenant] = [SimulatorConfiguration.defaultTenant]
    public var apps: [RegisteredApp] = []
    /// `expires_in` of issued tokens, seconds.
    public var tokenLifetime = 3599
    public var rateLimitPerMinute = 100
    public var rateLimitPerHour = 1500
    public var scenario = Scenario()
    public var faults: [Fault] = []
    /// The order of results (the real API promises none).
    public var resultOrder = ResultOrder.creation
    /// The order of Graph's results: newest first, as its list page says [GL].
    public var graphResultOrder = ResultOrder.newestFirst
    /// Graph's limit for alerts under `/security`: 150 requests a minute per app and tenant [GT].
    public var graphRateLimitPerMinute = 150
    /// Users who can sign in with the device code flow (user context).
    public var users: [SimulatedUser] = []

    /// The tenant of the shared fixtures.
    public static let defaultTenant = SimulatedTenant(
        id: "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35", domains: ["contoso.onmicrosoft.com", "contoso.com"], displayName: "Contoso")

    public init() {}
}

/// The simulated Microsoft services: Entra ID token endpoints and the Defender alerts API, with
/// scenarios, faults and counters. Transport-independent: the HTTP server (``SimulatorServer``)
/// and in-process tests both call ``handle(_:)``.
public actor SimulatedDefender {
    public let clock: SimulatorClock
    private var tokens: TokenEndpoint
    var store = AlertStore()
    var player: ScenarioPlayer
    private var limiter: RateLimiter
    var graphLimiter: RateLimiter
    var graphResultOrder: ResultOrder
    private var faults: [Fault]
    private var resultOrder: ResultOrder
    var random: SeededRandom
    private var generator: AlertGenerator
    var counters = SimulatorCounters()
    /// Who sent the alerts requests, in the order they came: runs of one member (the name a
    /// daemon of a group puts in `User-Agent`, "" for none). Two daemons polling at the same
    /// time show as runs that alternate.
    private var pollerRuns: [PollerRun] = []
    private let seed: UInt64
    /// Until when a simulated 429 burst asked clients to wait.
    private var burstRetryAfterUntil: [Fault.Target: Timestamp] = [:]
    /// Per API (`alerts`: MDE; `graph`: its alerts and incidents): when its latest 429 was answered, and until
    /// when that 429's `Retry-After` runs.
    private var retryAfterWindows: [String: (answered: Timestamp, until: Timestamp)] = [:]

    public init(configuration: SimulatorConfiguration, clock: SimulatorClock = .system()) throws(SimulatorSetupError) {
        try configuration.scenario.validate()
        for fault in configuration.faults { try fault.validate() }
        for app in configuration.apps where !configuration.tenants.contains(where: { $0.id == app.tenantID }) {
            throw SimulatorSetupError("app \(app.clientID) belongs to unknown tenant \(app.tenantID)")
        }
        self.clock = clock
        seed = configuration.seed
        tokens = TokenEndpoint(tenants: configuration.tenants, apps: configuration.apps, tokenLifetime: configuration.tokenLifetime)
        tokens.delegated.users = configuration.users
        limiter = RateLimiter(perMinute: configuration.rateLimitPerMinute, perHour: configuration.rateLimitPerHour)
        faults = configuration.faults
        resultOrder = configuration.resultOrder
        graphResultOrder = configuration.graphResultOrder
        graphLimiter = RateLimiter(perMinute: configuration.graphRateLimitPerMinute, perHour: 60 * configuration.graphRateLimitPerMinute)
        random = SeededRandom(seed: configuration.seed)
        generator = AlertGenerator(seed: configuration.seed, tenantID: configuration.tenants.first?.id ?? "")
        player = ScenarioPlayer(
            scenario: configuration.scenario, start: clock.now(),
            generator: AlertGenerator(seed: configuration.seed &+ 0x9E37, tenantID: generator.tenantID), seed: configuration.seed)
        player.seedBacklog(into: &store)
    }

    // MARK: Requests

    /// Answers one request.
    public func handle(_ request: SimulatorRequest) -> SimulatorOutcome {
        let segments = request.path.split(separator: "/").map(String.init)
        let endpoint: String
        let outcome: SimulatorOutcome
        switch (request.method, segments) {
        case (_, let s) where s.count == 3 && s[1] == "oauth2" && s[2] == "token":
            endpoint = "token_v1"
            outcome = token(request, tenant: s[0], version: .v1)
        case (_, let s) where s.count == 4 && s[1] == "oauth2" && s[2] == "v2.0" && s[3] == "token":
            endpoint = "token_v2"
            outcome = token(request, tenant: s[0], version: .v2)
        case (_, let s) where s.count == 4 && s[1] == "oauth2" && s[2] == "v2.0" && s[3] == "devicecode":
            endpoint = "devicecode"
            if let injected = injectFault(for: .token, request: request) {
                outcome = injected
            } else {
                outcome = SimulatorOutcome(tokens.deviceAuthorization(request, tenantName: s[0], now: clock.now()))
            }
        case ("GET", let s) where s.count == 4 && s[1] == "v2.0" && s[2] == ".well-known" && s[3] == "openid-configuration":
            endpoint = "openid"
            outcome = SimulatorOutcome(openIDConfiguration(request, tenant: s[0]))
        case ("GET", ["api", "alerts"]), ("GET", ["api", "v1.0", "alerts"]):
            endpoint = "alerts"
            outcome = alerts(request)
        case ("GET", ["v1.0", "security", "alerts_v2"]), ("GET", ["beta", "security", "alerts_v2"]):
            endpoint = "graph_alerts"
            outcome = graphList(request, .alerts)
        case ("GET", ["v1.0", "security", "incidents"]), ("GET", ["beta", "security", "incidents"]):
            endpoint = "graph_incidents"
            outcome = graphList(request, .incidents)
        case (_, let s) where s.first == Self.controlPrefix:
            endpoint = "control"
            outcome = SimulatorOutcome(control(request, segments: Array(s.dropFirst())))
        default:
            endpoint = "other"
            outcome = SimulatorOutcome(.apiError(404, code: "ResourceNotFound", message: "Resource \(request.path) was not found."))
        }
        counters.requests[endpoint, default: [:]][String(outcome.response.status), default: 0] += 1
        if ["alerts", "graph_alerts", "graph_incidents"].contains(endpoint) {
            // Graph's two lists share one rate limit, so one Retry-After.
            noteRetryAfter(endpoint == "alerts" ? "alerts" : "graph", request: request, outcome: outcome)
            notePoller(request)
        }
        return outcome
    }

    /// Extends the run of the member that sent `request`, or starts a new one.
    private func notePoller(_ request: SimulatorRequest) {
        let member = PollerRun.member(userAgent: request.header("User-Agent"))
        let at = request.arrivedAt ?? clock.now()
        if let last = pollerRuns.last, last.member == member {
            pollerRuns[pollerRuns.count - 1].requests += 1
            pollerRuns[pollerRuns.count - 1].last = at.description
        } else if pollerRuns.count < 100_000 {
            pollerRuns.append(PollerRun(member: member, requests: 1, first: at.description, last: at.description))
        }
    }

    /// The runs of alerts requests by member, oldest first.
    public var pollers: [PollerRun] { pollerRuns }

    /// Counts a request of an alerts API sent inside the `Retry-After` of an earlier 429 of that
    /// API (``SimulatorCounters/sentInsideRetryAfter``); remembers the window of a 429 answered now.
    private func noteRetryAfter(_ endpoint: String, request: SimulatorRequest, outcome: SimulatorOutcome) {
        let now = clock.now()
        let arrived = request.arrivedAt ?? now
        if let window = retryAfterWindows[endpoint], arrived > window.answered, arrived < window.until {
            counters.sentInsideRetryAfter += 1
        }
        guard outcome.response.status == 429, let header = outcome.response.header("Retry-After"),
            let wait = RetryAfter.parse(header, now: Double(now.ticks) / 10_000_000)?.wait
        else { return }
        let until = now.adding(seconds: wait.inSeconds)
        if let window = retryAfterWindows[endpoint], window.until > until { return }
        retryAfterWindows[endpoint] = (now, until)
    }

    private func token(_ request: SimulatorRequest, tenant: String, version: TokenEndpointVersion) -> SimulatorOutcome {
        if let injected = injectFault(for: .token, request: request) { return injected }
        var request = request
        if takeFault(for: .token, where: { $0 == .wrongAudience }) != nil { request.body = Self.otherResource(in: request.body) }
        let response = tokens.handle(request, tenantName: tenant, version: version, now: clock.now())
        if response.status == 200 { counters.tokensIssued += 1 }
        return SimulatorOutcome(response)
    }

    private func openIDConfiguration(_ request: SimulatorRequest, tenant: String) -> SimulatorResponse {
        guard let known = tokens.tenants.first(where: { $0.answers(to: tenant) }) else {
            return TokenEndpoint.error(400, "invalid_tenant", .tenantNotFound, "Tenant '\(tenant)' not found.", now: clock.now())
        }
        let base = "\(request.baseURL)/\(tenant)"
        return .json(
            200,
            .object([
                ("token_endpoint", .string("\(base)/oauth2/v2.0/token")),
                (
                    "token_endpoint_auth_methods_supported",
                    .array(["client_secret_post", "private_key_jwt", "client_secret_basic"].map { .string($0) })
                ),
                ("jwks_uri", .string("\(request.baseURL)/\(tenant)/discovery/v2.0/keys")),
                ("response_modes_supported", .array(["query", "fragment", "form_post"].map { .string($0) })),
                ("subject_types_supported", .array([.string("pairwise")])),
                ("id_token_signing_alg_values_supported", .array([.string("RS256")])),
                ("response_types_supported", .array(["code", "id_token", "code id_token", "id_token token"].map { .string($0) })),
                ("scopes_supported", .array(["openid", "profile", "email", "offline_access"].map { .string($0) })),
                ("issuer", .string("\(request.baseURL)/\(known.id)/v2.0")),
                ("request_uri_parameter_supported", .bool(false)),
                ("authorization_endpoint", .string("\(base)/oauth2/v2.0/authorize")),
                ("device_authorization_endpoint", .string("\(base)/oauth2/v2.0/devicecode")),
                ("end_session_endpoint", .string("\(base)/oauth2/v2.0/logout")),
                ("tenant_region_scope", .string("EU")),
                ("cloud_instance_name", .string("microsoftonline.com")),
            ]))
    }

    private func alerts(_ request: SimulatorRequest) -> SimulatorOutcome {
        if let injected = injectFault(for: .alerts, request: request) { return injected }
        let now = clock.now()

        // Authentication: 401 for a missing, unknown, expired or revoked token.
        guard let token = bearer(request, now: now) else {
            return SimulatorOutcome(.apiError(401, code: "Unauthorized", message: "Unauthorized"))
        }
        // A token for Microsoft Graph is no token for this API (as the Defender gateway
        // answers one for another resource: 401, `docs/microsoft-apis.md` §3).
        guard token.audience != Resource.graph else {
            return SimulatorOutcome(
                .apiError(
                    401, code: "Unauthorized",
                    message:
                        "Invalid Authorization payload. AppId: \(token.clientID), Audience: \(token.audience), Issuer: https://sts.windows.net/\(token.tenantID)/"
                ))
        }
        // Authorization: 403 for the wrong audience or a missing role.
        guard token.audience == Resource.defender else {
            return SimulatorOutcome(
                .apiError(
                    403, code: "Forbidden",
                    message: "The application token has the wrong audience '\(token.audience)'; request a token for \(Resource.defender)."))
        }
        if token.user != nil {
            // User context: the delegated permission, and only the device groups the user may see.
            guard token.scopes.contains("Alert.Read") || token.scopes.contains("Alert.ReadWrite") else {
                return SimulatorOutcome(
                    .apiError(
                        403, code: "Forbidden",
                        message:
                            "The user token does not have any of the required delegated permissions (Alert.ReadWrite, Alert.Read) to access the resource."
                    ))
            }
        } else {
            guard token.roles.contains("Alert.Read.All") || token.roles.contains("Alert.ReadWrite.All") else {
                return SimulatorOutcome(
                    .apiError(
                        403, code: "Forbidden",
                        message:
                            "The application does not have any of the required application permissions (Alert.ReadWrite.All, Alert.Read.All) to access the resource."
                    ))
            }
        }
        if let seconds = admit(token, to: &limiter, now: now) {
            return SimulatorOutcome(
                .apiError(
                    429, code: "TooManyRequests",
                    message:
                        "Too many requests. The rate limit for this API is \(limiter.perMinute) calls per minute and \(limiter.perHour) calls per hour.",
                    headers: [("Retry-After", String(seconds))]))
        }
        var query: AlertsQuery
        do {
            query = try AlertsQuery(queryString: request.query)
        } catch {
            return SimulatorOutcome(.apiError(400, code: "ODataError", message: error.message))
        }
        if takeFault(for: .alerts, where: { $0 == .ignoreTop }) != nil { query.top = nil }
        player.advance(to: now, store: &store)
        let page = store.query(query, now: now, order: resultOrder, deviceGroups: token.user?.deviceGroups.map(Set.init), random: &random)
        counters.alertsServed += page.count
        let body = JSONValue.object([("@odata.context", .string("\(request.baseURL)/api/$metadata#Alerts")), ("value", .array(page))])
        var response = SimulatorResponse.json(
            200, body, contentType: "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8",
            headers: [("OData-Version", "4.0")])
        if let fault = takeFault(for: .alerts, where: \.addsElement) {
            response.body = Self.splice(element(for: fault.kind, now: now), into: response.body)
        }
        return SimulatorOutcome(response)
    }

    /// The valid token a request carries: issued here, neither revoked nor expired.
    func bearer(_ request: SimulatorRequest, now: Timestamp) -> IssuedToken? {
        guard let authorization = request.header("Authorization"), authorization.lowercased().hasPrefix("bearer "),
            let token = tokens.issued[String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces)],
            !token.revoked, token.expiresAt > now
        else { return nil }
        return token
    }

    /// Counts a call of the token's app against `limiter`; the seconds to wait when it is over.
    func admit(_ token: IssuedToken, to limiter: inout RateLimiter, now: Timestamp) -> Int? {
        guard case .limited(let seconds, let ignored) = limiter.admit(.init(tenantID: token.tenantID, clientID: token.clientID), now: now) else {
            return nil
        }
        counters.rateLimited += 1
        if ignored { counters.callsIgnoringRetryAfter += 1 }
        return seconds
    }

    /// An element for a fault that adds one, with a new id; `updated` names its update time
    /// (Graph calls it `lastUpdateDateTime`).
    func element(for kind: Fault.Kind, now: Timestamp, updated: String = "lastUpdateTime") -> Data {
        let id = "da\(now.dotNetTicks)_bad\(counters.faultsInjected)"
        let head = Data(#"{"id":"\#(id)","\#(updated)":"\#(now.description)","severity":"High","title":"#.utf8)
        switch kind {
        case .loneSurrogate: return head + Data(#""bad \udc00 title","status":"New"}"#.utf8)
        case .invalidUTF8: return head + Data("\"bad ".utf8) + Data([0xFF, 0xFE, 0xC0, 0x80]) + Data(#" title","status":"New"}"#.utf8)
        default:
            return head + Data(#""deep","nested":"#.utf8) + Data(repeating: UInt8(ascii: "["), count: 600)
                + Data(repeating: UInt8(ascii: "]"), count: 600) + Data("}".utf8)
        }
    }

    /// A fault's `Retry-After`: seconds, or the HTTP date that many seconds from now (rounded
    /// up to a whole second, as the format has no fraction).
    private static func retryAfter(_ fault: Fault, now: Timestamp) -> String {
        let seconds = fault.retryAfter ?? 30
        guard fault.retryAfterDate == true else { return String(seconds) }
        var time = time_t(now.ticks / 10_000_000 + 1 + Int64(seconds))
        var parts = tm()
        gmtime_r(&time, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"],
            months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return
            "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }

    /// `body` (an alerts page) with `element` first in its `value`.
    static func splice(_ element: Data, into body: Data) -> Data {
        guard let range = body.range(of: Data(#""value":["#.utf8)) else { return body }
        let rest = body[range.upperBound...]
        let separator = rest.first == UInt8(ascii: "]") ? Data() : Data(",".utf8)
        return body[..<range.upperBound] + element + separator + rest
    }

    /// The answer of the first active fault for `target` that fires, if any.
    func injectFault(for target: Fault.Target, request: SimulatorRequest) -> SimulatorOutcome? {
        let now = clock.now()
        if let until = burstRetryAfterUntil[target], until > now { counters.callsIgnoringRetryAfter += 1 }
        guard let fault = takeFault(for: target, where: { !$0.changesAnswer }) else { return nil }
        if fault.kind == .rateLimit {
            burstRetryAfterUntil[target] = now.adding(seconds: Double(fault.retryAfter ?? 30))
        }
        return Self.outcome(of: fault, target: target, request: request, now: now)
    }

    /// A token request's form asking for the other API's resource (Graph for WindowsDefenderATP
    /// and the reverse).
    private static func otherResource(in body: Data) -> Data {
        let pairs = String(decoding: body, as: UTF8.self).split(separator: "&").map { pair -> String in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, ["scope", "resource"].contains(parts[0]),
                let value = parts[1].replacingOccurrences(of: "+", with: " ").removingPercentEncoding
            else { return String(pair) }
            let swapped =
                value.contains(Resource.graph)
                ? value.replacingOccurrences(of: Resource.graph, with: Resource.defender)
                : value.replacingOccurrences(of: Resource.defender, with: Resource.graph)
            return "\(parts[0])=\(swapped.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? swapped)"
        }
        return Data(pairs.joined(separator: "&").utf8)
    }

    /// The first active fault for `target` of the kinds asked for that fires, if any; uses up
    /// one of its count.
    func takeFault(for target: Fault.Target, where kind: (Fault.Kind) -> Bool) -> Fault? {
        for (index, fault) in faults.enumerated() where (fault.target == target || fault.target == .any) && kind(fault.kind) {
            if let probability = fault.probability, !random.chance(probability) { continue }
            if let count = fault.count {
                if count <= 1 { faults.remove(at: index) } else { faults[index].count = count - 1 }
            }
            counters.faultsInjected += 1
            return fault
        }
        return nil
    }

    private static func outcome(of fault: Fault, target: Fault.Target, request: SimulatorRequest, now: Timestamp) -> SimulatorOutcome {
        let ok = SimulatorResponse.json(200, .object([("value", .array([]))]))
        switch fault.kind {
        case .status:
            let status = fault.status ?? 503
            if target == .token {
                return SimulatorOutcome(
                    TokenEndpoint.error(
                        status, "temporarily_unavailable", nil, "The service is temporarily unavailable (simulated outage, HTTP \(status)).",
                        now: Timestamp(Date())))
            }
            // Documented: InternalServerError carries no message.
            return SimulatorOutcome(
                .apiError(
                    status, code: status >= 500 ? "InternalServerError" : "BadRequest",
                    message: status >= 500 ? "" : "Simulated failure (HTTP \(status))."))
        case .rateLimit:
            return SimulatorOutcome(
                .apiError(
                    429, code: "TooManyRequests", message: "Too many requests (simulated burst).",
                    headers: [("Retry-After", retryAfter(fault, now: now))]))
        case .delay:
            return SimulatorOutcome(ok, delivery: .delayed(.milliseconds(Int64((fault.seconds ?? 5) * 1000))))
        case .stall:
            return SimulatorOutcome(ok, delivery: .stall)
        case .truncated:
            return SimulatorOutcome(
                .json(200, .object([("@odata.context", .string("truncated")), ("value", .array((0..<50).map { .int($0) }))])), delivery: .truncated)
        case .invalidJSON:
            return SimulatorOutcome(
                SimulatorResponse(
                    status: 200, headers: [("Content-Type", "application/json; charset=utf-8")], body: Data("{\"value\": [{\"id\": \"da1\", ".utf8)))
        case .wrongContentType:
            return SimulatorOutcome(
                SimulatorResponse(
                    status: 200, headers: [("Content-Type", "text/html; charset=utf-8")],
                    body: Data("<html><body>Proxy login required</body></html>".utf8)))
        case .echo:
            if target == .token {
                // No AADSTS code: Entra ID does not do this; a stand-in or a proxy might.
                return SimulatorOutcome(
                    .json(
                        400,
                        .object([
                            ("error", .string("invalid_request")),
                            ("error_description", .string("Could not process the request: \(String(decoding: request.body, as: UTF8.self))")),
                        ])))
            }
            return SimulatorOutcome(
                .apiError(
                    400, code: "BadRequest",
                    message: "Bad request: GET \(request.path)?\(request.query) Authorization: \(request.header("Authorization") ?? "")"))
        case .loneSurrogate, .invalidUTF8, .deepNesting, .wrongAudience, .ignoreTop, .nextLinkLoop:
            return SimulatorOutcome(ok)  // never: these change a real answer
        }
    }

    // MARK: Control

    /// Adds alerts; `visibleAfter` seconds after their `lastUpdateTime` they become queryable.
    @discardableResult
    public func addAlerts(_ objects: [JSONValue], visibleAfter: Double = 0) throws(SimulatorSetupError) -> [String] {
        var ids: [String] = []
        for object in objects {
            guard let text = object["lastUpdateTime"]?.stringValue, let updated = Timestamp(parsing: text) else {
                throw SimulatorSetupError("an alert needs a \"lastUpdateTime\" in ISO 8601 (UTC, 0-7 fraction digits)")
            }
            ids.append(try store.upsert(object, visibleFrom: updated.adding(seconds: visibleAfter)))
        }
        return ids
    }

    /// Generates `count` alerts sharing one `lastUpdateTime` (default: now).
    @discardableResult
    public func generateAlerts(
        count: Int, lastUpdateTime: Timestamp? = nil, visibleAfter: Double = 0,
        severity: String? = nil
    ) throws(SimulatorSetupError) -> [String] {
        let time = lastUpdateTime ?? clock.now()
        let objects = (0..<count).map { _ in generator.makeAlert(lastUpdateTime: time, severity: severity) }
        return try addAlerts(objects, visibleAfter: visibleAfter)
    }

    /// Generates `count` alerts of another Defender XDR service (`serviceSource`, such as
    /// `microsoftDefenderForOffice365`), which only Graph lists.
    @discardableResult
    public func generateGraphAlerts(
        count: Int, serviceSource: String, lastUpdateTime: Timestamp? = nil,
        visibleAfter: Double = 0
    ) throws(SimulatorSetupError) -> [String] {
        guard GraphServiceSources.known.contains(serviceSource), serviceSource != "microsoftDefenderForEndpoint" else {
            throw SimulatorSetupError(
                "serviceSource must be another Defender XDR service than Endpoint: \(GraphServiceSources.known.filter { $0 != "microsoftDefenderForEndpoint" }.joined(separator: ", "))"
            )
        }
        let time = lastUpdateTime ?? clock.now()
        var ids: [String] = []
        for _ in 0..<count {
            ids.append(
                try store.upsert(
                    generator.makeGraphAlert(serviceSource: serviceSource, lastUpdateTime: time),
                    visibleFrom: time.adding(seconds: visibleAfter), graphOnly: true))
        }
        return ids
    }

    /// Changes an alert as an analyst would (or sets `changes` exactly); a new `lastUpdateTime`.
    @discardableResult
    public func updateAlert(
        id: String, changes: [(String, JSONValue)] = [], at time: Timestamp? = nil,
        visibleAfter: Double = 0
    ) throws(SimulatorSetupError) -> JSONValue {
        guard let stored = store.alert(id: id) else { throw SimulatorSetupError("no alert with id \(id)") }
        guard !stored.graphOnly else { throw SimulatorSetupError("alert \(id) is a Graph-only alert; updates are for Endpoint alerts") }
        let time = time ?? clock.now()
        var object = changes.isEmpty ? generator.update(stored.object, at: time) : stored.object
        for (name, value) in changes { object.set(name, value) }
        object.set("lastUpdateTime", .string(time.description))
        try store.upsert(object, visibleFrom: time.adding(seconds: visibleAfter))
        return object
    }

    /// How many alerts there are, visible or not (the scenario's arrivals so far included).
    public func alertCount() -> Int {
        player.advance(to: clock.now(), store: &store)
        return store.count
    }

    /// Every alert, visible or not, in creation order.
    public func allAlerts() -> [JSONValue] {
        player.advance(to: clock.now(), store: &store)
        return store.alerts.map(\.object)
    }

    public func addFault(_ fault: Fault) throws(SimulatorSetupError) {
        try fault.validate()
        faults.append(fault)
    }

    /// The order of results of both APIs.
    public func setResultOrder(_ order: ResultOrder) {
        resultOrder = order
        graphResultOrder = order
    }

    public func clearFaults() {
        faults.removeAll()
    }

    /// Revokes every token issued so far (the API answers 401 until a new one is fetched).
    public func revokeTokens() {
        for key in tokens.issued.keys { tokens.issued[key]?.revoked = true }
    }

    /// Adds (or replaces) a user who can sign in with the device code flow.
    public func add(_ user: SimulatedUser) throws(SimulatorSetupError) {
        guard tokens.tenants.contains(where: { $0.id == user.tenantID }) else { throw SimulatorSetupError("unknown tenant \(user.tenantID)") }
        tokens.delegated.users.removeAll { $0.userPrincipalName == user.userPrincipalName && $0.tenantID == user.tenantID }
        tokens.delegated.users.append(user)
    }

    /// Approves the pending sign-in with `userCode` as `user`, or declines it (`user` nil).
    public func decideDeviceCode(_ userCode: String, user: String?) throws(SimulatorSetupError) {
        try tokens.decide(userCode: userCode, user: user)
    }

    /// Revokes every refresh and access token of a user (a password reset, an admin's revocation).
    public func revokeUser(_ user: String) throws(SimulatorSetupError) {
        try tokens.revoke(user: user)
    }

    /// Polls answered `slow_down` when they come sooner than `interval` (RFC 8628 §3.5).
    public func setDeviceCodeSlowDown(_ on: Bool) {
        tokens.delegated.slowDown = on
    }

    /// Refuses every refresh of the user's tokens with `code` (50076, 50079, 50158, 53003,
    /// 700082 or 50173) and `error` (by default the one that code comes with) until the user
    /// signs in again; `code` nil: refreshes work again.
    public func refuseRefreshes(of user: String, code: EntraErrorCode?, error: String? = nil) throws(SimulatorSetupError) {
        try tokens.refuseRefreshes(user: user, code: code, error: error)
    }

    /// The `message` (`{code}` stands for the user code) and `verification_uri` of the device
    /// code answers from now on; nil: Entra ID's own.
    public func setDeviceCodeAnswer(message: String?, verificationURI: String?) {
        tokens.delegated.answerMessage = message
        tokens.delegated.answerVerificationURI = verificationURI
    }

    public func register(_ app: RegisteredApp) throws(SimulatorSetupError) {
        guard tokens.tenants.contains(where: { $0.id == app.tenantID }) else {
            throw SimulatorSetupError("unknown tenant \(app.tenantID)")
        }
        tokens.apps.removeAll { $0.tenantID == app.tenantID && $0.clientID == app.clientID }
        tokens.apps.append(app)
    }

    /// Replaces the running scenario; arrivals count from now.
    public func setScenario(_ scenario: Scenario) throws(SimulatorSetupError) {
        try scenario.validate()
        let scenarioSeed = seed &+ 0x9E37 &+ UInt64(store.count)
        player = ScenarioPlayer(
            scenario: scenario, start: clock.now(),
            generator: AlertGenerator(seed: scenarioSeed, tenantID: generator.tenantID), seed: scenarioSeed)
        player.seedBacklog(into: &store)
    }

    public var counterSnapshot: SimulatorCounters {
        var snapshot = counters
        snapshot.deviceCodePolls = tokens.delegated.polls
        snapshot.refreshTokensRedeemed = tokens.delegated.redeemed
        snapshot.refreshTokensReused = tokens.delegated.reused
        snapshot.clientAssertionsReused = tokens.reusedAssertions
        return snapshot
    }
}
