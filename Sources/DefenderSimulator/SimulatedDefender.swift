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
    var tokens: TokenEndpoint
    var store = AlertStore()
    var player: ScenarioPlayer
    private var limiter: RateLimiter
    var graphLimiter: RateLimiter
    var graphResultOrder: ResultOrder
    var faults: [Fault]
    var resultOrder: ResultOrder
    var random: SeededRandom
    var generator: AlertGenerator
    var counters = SimulatorCounters()
    /// Who sent the alerts requests, in the order they came: runs of one member (the name a
    /// daemon of a group puts in `User-Agent`, "" for none). Two daemons polling at the same
    /// time show as runs that alternate.
    private var pollerRuns: [PollerRun] = []
    let seed: UInt64
    /// Until when a simulated 429 burst asked clients to wait.
    var burstRetryAfterUntil: [Fault.Target: Timestamp] = [:]
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
}
