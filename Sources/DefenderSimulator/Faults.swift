/// A fault to inject: one-shot (`count`) or lasting, always or with a probability.
public struct Fault: Sendable, Equatable, Codable {
    /// Which endpoints it hits.
    public enum Target: String, Sendable, Codable, CaseIterable {
        case token, alerts, any
    }

    /// What goes wrong.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// An HTTP error status (`status`, default 503) with the API's error body.
        case status
        /// A 429 burst with `Retry-After: retryAfter` seconds (default 30).
        case rateLimit = "rate-limit"
        /// The answer comes `seconds` late.
        case delay
        /// Headers are sent, then nothing: the body never comes.
        case stall
        /// The body is cut off half way and the connection closed.
        case truncated
        /// A 200 whose body is not JSON.
        case invalidJSON = "invalid-json"
        /// A 200 with an HTML content type (as a captive proxy would send).
        case wrongContentType = "wrong-content-type"
        /// A 400 whose error text echoes the request: its body (token endpoint) or its
        /// `Authorization` header (alerts), as a misbehaving endpoint or proxy might.
        case echo
        /// One more element at the start of an alerts page (the page is otherwise as usual): an
        /// alert whose title holds a lone surrogate escape `\udc00` (legal JSON text, to be
        /// forwarded as it came)...
        case loneSurrogate = "lone-surrogate"
        /// ... an alert with invalid UTF-8 in its title (not JSON: to be quarantined) ...
        case invalidUTF8 = "invalid-utf8"
        /// ... or an alert with a member nested 600 deep (beyond any parser's limit).
        case deepNesting = "deep-nesting"
        /// Token endpoint: a token for the other API than the one asked for (Microsoft Graph
        /// for WindowsDefenderATP and the reverse), as a stand-in of Entra ID that ignores the
        /// scope might issue; the API it is used on refuses it.
        case wrongAudience = "wrong-audience"
        /// Alerts: a page holds every alert its filter matches, whatever `$top` asked for (an
        /// API that ignores it: more elements than asked).
        case ignoreTop = "ignore-top"
        /// Graph: the page's `@odata.nextLink` is the request's own URL (a chain that never ends).
        case nextLinkLoop = "next-link-loop"

        /// The kinds that add an element to a page instead of replacing the answer.
        public var addsElement: Bool { [.loneSurrogate, .invalidUTF8, .deepNesting].contains(self) }
        /// The kinds that change a normal answer (an element added, another audience, `$top`
        /// ignored, a link to itself) rather than replace it.
        var changesAnswer: Bool { addsElement || [.wrongAudience, .ignoreTop, .nextLinkLoop].contains(self) }
    }

    public var target: Target
    public var kind: Kind
    public var status: Int?
    public var retryAfter: Int?
    /// With `rate-limit`: `Retry-After` as an HTTP date (IMF-fixdate) instead of seconds.
    public var retryAfterDate: Bool?
    public var seconds: Double?
    /// How many requests it hits; `nil` until cleared.
    public var count: Int?
    /// Chance that a request is hit, 0...1.
    public var probability: Double?

    public init(
        target: Target, kind: Kind, status: Int? = nil, retryAfter: Int? = nil, seconds: Double? = nil,
        count: Int? = nil, probability: Double? = nil
    ) {
        self.target = target
        self.kind = kind
        self.status = status
        self.retryAfter = retryAfter
        self.seconds = seconds
        self.count = count
        self.probability = probability
    }

    /// Checks the values; the message names the bad one.
    public func validate() throws(SimulatorSetupError) {
        if let status, !(400...599).contains(status) { throw SimulatorSetupError("status must be 400...599, not \(status)") }
        if let count, count < 1 { throw SimulatorSetupError("count must be at least 1") }
        if let probability, !(0...1).contains(probability) { throw SimulatorSetupError("probability must be between 0 and 1") }
        if let seconds, seconds < 0 { throw SimulatorSetupError("seconds must not be negative") }
        if let retryAfter, retryAfter < 0 { throw SimulatorSetupError("retryAfter must not be negative") }
    }
}

/// How a response is delivered, beyond its content.
public enum Delivery: Sendable, Equatable {
    case normal
    /// Sent after a pause.
    case delayed(Duration)
    /// Headers only, then silence until the client gives up.
    case stall
    /// Half the body, then the connection is closed.
    case truncated
}

/// A response and the way to deliver it.
public struct SimulatorOutcome: Sendable {
    public var response: SimulatorResponse
    public var delivery: Delivery

    public init(_ response: SimulatorResponse, delivery: Delivery = .normal) {
        self.response = response
        self.delivery = delivery
    }
}

/// Request counters, for tests and the control API.
/// Alerts requests in a row from one member of a group (`GET /_simulator/pollers`).
public struct PollerRun: Sendable, Equatable, Codable {
    /// The member named in `User-Agent` (`defender-alertd/1.0 (member NAME)`), "" for none.
    public var member: String
    public var requests: Int
    /// When the first and the last request of the run arrived (ISO 8601).
    public var first: String
    public var last: String

    static func member(userAgent: String?) -> String {
        guard let userAgent, let start = userAgent.range(of: "(member "), let end = userAgent[start.upperBound...].firstIndex(of: ")") else {
            return ""
        }
        return String(userAgent[start.upperBound..<end])
    }
}

public struct SimulatorCounters: Sendable, Equatable, Codable {
    /// endpoint -> HTTP status -> count. Endpoints: `token_v1`, `token_v2`, `alerts` (MDE), `graph_alerts`, `openid`, `control`, `other`.
    public var requests: [String: [String: Int]] = [:]
    public var tokensIssued = 0
    /// 429 answers from the rate limiter.
    public var rateLimited = 0
    /// Calls that came while an earlier `Retry-After` was still running.
    public var callsIgnoringRetryAfter = 0
    /// Alerts requests (MDE or Graph) that came after a 429 of the same API had been answered
    /// and before its `Retry-After` ran out: sent after the client could know it had to wait.
    /// (``callsIgnoringRetryAfter`` also counts a request that was already on its way when the
    /// 429 went out.) Counted from when the request arrived (its head read), against when the
    /// 429 was answered (whichever of the rate limiter or a `rate-limit` fault sent it).
    public var sentInsideRetryAfter = 0
    public var alertsServed = 0
    /// Incidents served by Graph's `security/incidents`.
    public var incidentsServed = 0
    public var faultsInjected = 0
    /// User context: polls of `/token` with a device code, refresh tokens redeemed, and
    /// refresh tokens redeemed again after they had been rotated (a client that lost the new one).
    public var deviceCodePolls = 0
    public var refreshTokensRedeemed = 0
    public var refreshTokensReused = 0
    /// Client assertions whose `jti` had been used before (accepted: how Entra ID answers one is
    /// not documented); a client that makes a fresh assertion per request keeps this at 0.
    public var clientAssertionsReused = 0

    /// Total requests to an endpoint.
    public func total(_ endpoint: String) -> Int {
        requests[endpoint]?.values.reduce(0, +) ?? 0
    }

    /// Requests to an endpoint answered with `status`.
    public func count(_ endpoint: String, status: Int) -> Int {
        requests[endpoint]?[String(status)] ?? 0
    }
}
