import Foundation
import Logging
import OrderedJSON
import Timekeeping

/// Gets app-only tokens from Entra ID and caches them.
///
/// - The token is renewed once 75 % of its lifetime has passed (before 80 %), so callers
///   never hold an expiring one; if renewal fails, the still-valid token keeps being used.
/// - Concurrent callers share one request (single flight).
/// - ``invalidate(_:)`` after a 401 from the API forces the next call to fetch a new token.
/// - Failures are classified (``TokenError/Kind``); after one, no new request is made before a
///   back-off with full jitter has passed (longer for permanent errors), so a wrong secret
///   never turns into a tight loop against Entra ID.
/// - Secrets, assertions and tokens never appear in logs or errors.
public actor TokenProvider {
    public struct Configuration: Sendable {
        public var tenantID: String
        public var clientID: String
        public var credential: ClientCredential
        public var endpoints: DefenderEndpoints
        public var version: TokenEndpointVersion
        /// Overall deadline of one token request.
        public var requestDeadline: Duration = .seconds(30)
        public var transientBackoff = Backoff(base: .seconds(1), cap: .seconds(120))
        public var permanentBackoff = Backoff(base: .seconds(30), cap: .seconds(900))

        public init(
            tenantID: String, clientID: String, credential: ClientCredential, endpoints: DefenderEndpoints,
            version: TokenEndpointVersion = .v2
        ) {
            self.tenantID = tenantID
            self.clientID = clientID
            self.credential = credential
            self.endpoints = endpoints
            self.version = version
        }
    }

    private struct Cached {
        var token: AccessToken
        var renewAt: Duration
        var expiresAt: Duration
    }

    private let configuration: Configuration
    private let transport: any HTTPTransport
    private let clock: MonotonicClock
    private let wallClock: @Sendable () -> Date
    private let random: @Sendable () -> Double
    private let metrics: any APIObserver
    private let logger: Logger
    private var cached: Cached?
    private var inFlight: Task<AccessToken, any Error>?
    private var failures = 0
    private var lastFailure: (error: TokenError, retryAt: Duration)?
    /// User context: the refresh token Entra ID refused for good. Nothing is asked of Entra ID
    /// again until another one is stored (a new sign-in), however often a token is wanted.
    private var refusedRefreshToken: (token: Secret, error: TokenError)?
    /// User context: a sign-in needed is logged when it starts, then at most hourly, and once
    /// when it ends.
    private var signInLog = PersistentFailureLog()
    /// Token requests made (for tests and status).
    public private(set) var requestCount = 0

    public init(
        configuration: Configuration, transport: any HTTPTransport, clock: MonotonicClock = .continuous,
        wallClock: @escaping @Sendable () -> Date = { Date() },
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }, metrics: any APIObserver = UnobservedAPI(),
        logger: Logger
    ) {
        self.configuration = configuration
        self.metrics = metrics
        self.transport = transport
        self.clock = clock
        self.wallClock = wallClock
        self.random = random
        self.logger = logger
    }

    /// A valid token: the cached one, or a new one.
    ///
    /// - Returns: A token with at least a quarter of its life left, or, when renewing failed,
    ///   the cached one while it has more than 30 s left.
    /// - Throws: ``TokenError`` (classified: transient, permanent, sign-in needed) when there is
    ///   no usable token; until its back-off has passed, the same error without a new request.
    public func token() async throws(TokenError) -> AccessToken {
        let now = clock.now()
        if let cached, now < cached.renewAt { return cached.token }
        do {
            return try await renew()
        } catch {
            if let cached, clock.now() < cached.expiresAt - .seconds(30) {
                // A sign-in needed is logged (at most hourly) where it was met, not at each call.
                logger.log(
                    level: error.needsSignIn ? .debug : .warning,
                    "renewing the access token failed; the current one stays in use until it expires",
                    metadata: ["error": "\(error)"])
                return cached.token
            }
            throw error
        }
    }

    /// Forgets `token` (the API refused it): the next ``token()`` fetches a new one.
    public func invalidate(_ token: AccessToken) {
        if cached?.token == token { cached = nil }
    }

    private func renew() async throws(TokenError) -> AccessToken {
        if let inFlight {
            return try await Self.value(of: inFlight)
        }
        // A new sign-in stored after a refused one is tried at once: a person who just ran
        // `login` does not wait out the back-off.
        if let lastFailure, clock.now() < lastFailure.retryAt {
            guard await newSignInStored() else { throw lastFailure.error }
            // Another caller may have started a request while the token was read.
            if let inFlight { return try await Self.value(of: inFlight) }
        }
        let task = Task { try await self.request() }
        inFlight = task
        defer { inFlight = nil }
        return try await Self.value(of: task)
    }

    private static func value(of task: Task<AccessToken, any Error>) async throws(TokenError) -> AccessToken {
        do {
            // Awaiting a task's value does not pass cancellation on: do it by hand, so a
            // stopping daemon does not wait for a token request to time out.
            return try await withTaskCancellationHandler {
                try await task.value
            } onCancel: {
                task.cancel()
            }
        } catch let error as TokenError {
            throw error
        } catch {
            throw TokenError(kind: .transient, message: "\(error)")
        }
    }

    private func request() async throws(TokenError) -> AccessToken {
        requestCount += 1
        do {
            let token = try await exchange()
            let now = clock.now()
            let lifetime = token.lifetime
            cached = Cached(token: token, renewAt: now + lifetime * 0.75, expiresAt: now + lifetime)
            failures = 0
            lastFailure = nil
            if signInLog.ended() {
                logger.notice("signed in again: the access token was renewed with the new sign-in")
            }
            metrics.tokenRequest()
            logger.debug(
                "access token obtained",
                metadata: ["expires_in_seconds": "\(lifetime.components.seconds)", "roles": "\(token.roles.joined(separator: ","))"])
            return token
        } catch {
            // A cancelled request (the daemon is stopping, a poll ran out of time) says nothing
            // about Entra ID: no back-off for it.
            if Task.isCancelled { throw error }
            metrics.tokenRequest(failure: .some(error.code))
            let backoff = error.kind == .permanent ? configuration.permanentBackoff : configuration.transientBackoff
            var wait = backoff.delay(attempt: failures, unit: random())
            if let retryAfter = error.retryAfter { wait = max(wait, retryAfter) }
            failures += 1
            lastFailure = (error, clock.now() + wait)
            if error.needsSignIn {
                // It lasts until a person signs in: when it starts, then at most hourly.
                switch signInLog.failed(at: clock.now()) {
                case .write(let suppressed):
                    logger.error("\(error)", metadata: ["next_attempt_in_ms": "\(wait.totalMilliseconds)", "repeats_not_logged": "\(suppressed)"])
                case .suppress:
                    logger.debug("sign-in still needed", metadata: ["command": "\(error.signInCommand ?? "")"])
                }
            } else {
                logger.error("\(error)", metadata: ["next_attempt_in_ms": "\(wait.totalMilliseconds)"])
            }
            throw error
        }
    }

    private func exchange() async throws(TokenError) -> AccessToken {
        if case .refreshToken(let keeper) = configuration.credential { return try await refresh(keeper) }
        let endpoint = configuration.endpoints.tokenURL(tenant: configuration.tenantID, version: configuration.version)
        var form: [(String, String)] = [("grant_type", "client_credentials"), ("client_id", configuration.clientID)]
        switch configuration.version {
        case .v1: form.append(("resource", configuration.endpoints.resource))
        case .v2: form.append(("scope", configuration.endpoints.resource + "/.default"))
        }
        let body: Secret
        /// What this request carries that must never be logged (the secret or the assertion).
        var sent: [Secret] = []
        switch configuration.credential {
        case .secret(let secret):
            sent.append(secret)
            body = secret.withValue { Secret(PercentEncoding.form(form + [("client_secret", $0)])) }
        case .refreshToken:
            preconditionFailure("user context is handled by refresh(_:)")
        case .certificate(let certificate):
            let assertion: Secret
            do {
                assertion = try certificate.assertion(audience: endpoint, clientID: configuration.clientID, now: wallClock())
            } catch {
                throw TokenError(kind: .permanent, message: error.description)
            }
            sent.append(assertion)
            body = assertion.withValue {
                Secret(
                    PercentEncoding.form(
                        form + [("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), ("client_assertion", $0)]))
            }
        }
        let response = try await post(body, to: endpoint, sent: sent)
        return try Self.interpret(response, endpoint: endpoint, now: wallClock().timeIntervalSince1970, sent: sent)
    }

    /// POSTs a form to the token endpoint, counted; a request that got no answer is a transient
    /// error whose text masks what it `sent`.
    private func post(_ body: Secret, to endpoint: String, sent: [Secret]) async throws(TokenError) -> HTTPExchangeResponse {
        do {
            let response = try await TokenEndpointForm.post(body, to: endpoint, transport: transport, deadline: configuration.requestDeadline)
            metrics.request(endpoint: "token", status: response.status)
            return response
        } catch {
            metrics.request(endpoint: "token", status: nil)
            throw TokenError(
                kind: .transient, message: SecretRedaction.redact("\(endpoint): \(error)", also: sent),
                hint: "check network access to \(configuration.endpoints.loginBase) (proxy_url, HTTPS_PROXY, ca_file).")
        }
    }

    /// Whether someone signed in since the last failure said a sign-in was needed: another
    /// refresh token than the one Entra ID refused is stored, or one is stored where there was
    /// none (the first `login` is used at once too, not after the back-off).
    private func newSignInStored() async -> Bool {
        guard case .refreshToken(let keeper) = configuration.credential, let stored = try? await keeper.load() else { return false }
        if let refused = refusedRefreshToken { return stored != refused.token }
        return lastFailure?.error.needsSignIn == true
    }

    /// User context: redeems the stored refresh token (v2 endpoint, the delegated permission
    /// of the API), stores the rotated one before the access token is used, and turns a refusal
    /// of the grant into a permanent error that names the command to sign in again.
    private func refresh(_ keeper: any RefreshTokenKeeper) async throws(TokenError) -> AccessToken {
        let stored: Secret?
        do { stored = try await keeper.load() } catch { throw TokenError(kind: .permanent, message: "\(error)") }
        guard let stored else {
            throw TokenError(
                kind: .permanent, message: "nobody has signed in for this tenant yet", hint: "run `\(keeper.signInCommand)`.",
                signInCommand: keeper.signInCommand)
        }
        if let refused = refusedRefreshToken, refused.token == stored { throw refused.error }
        let endpoint = configuration.endpoints.tokenURL(tenant: configuration.tenantID, version: .v2)
        let body = stored.withValue {
            Secret(
                PercentEncoding.form([
                    ("grant_type", "refresh_token"), ("client_id", configuration.clientID), ("refresh_token", $0),
                    ("scope", configuration.endpoints.userScope),
                ]))
        }
        let response = try await post(body, to: endpoint, sent: [stored])
        let tokens: DeviceCodeLogin.Tokens
        do {
            tokens = try DeviceCodeLogin.tokens(from: response, endpoint: endpoint, sent: [stored])
        } catch  where Self.refusalNeedsSignIn(error) {
            // Revoked, expired after 90 days unused, a password reset, consent withdrawn, MFA or
            // Conditional Access now required: a person must sign in again. Never asked again
            // with this token.
            let refusal = TokenError(
                kind: .permanent, status: error.status, error: error.error, code: error.code,
                message: "sign-in needed, run `\(keeper.signInCommand)`: the signed-in user's refresh token was refused (\(error.message))",
                hint: Self.signInHint(code: error.code, command: keeper.signInCommand), signInCommand: keeper.signInCommand)
            refusedRefreshToken = (stored, refusal)
            throw refusal
        }
        do {
            try await keeper.save(tokens.refreshToken)
        } catch {
            // The token just used stays valid at Entra ID: the next renewal uses it again.
            logger.error("the rotated refresh token cannot be stored; the one stored before stays in use: \(error)")
        }
        return tokens.accessToken
    }

    /// AADSTS codes of a refused refresh that only a new sign-in mends, whatever the `error`
    /// beside them (https://learn.microsoft.com/entra/identity-platform/reference-error-codes):
    /// 50076 UserStrongAuthClientAuthNRequired and 50079 UserStrongAuthEnrollmentRequired (MFA now
    /// required), 50158 ExternalSecurityChallenge, 53003 BlockedByConditionalAccess, 50173
    /// FreshTokenNeeded (revoked), 70008 and 700082 ExpiredOrRevokedGrant (unused too long), 70043
    /// BadTokenDueToSignInFrequency, 65001 DelegationDoesNotExist (consent withdrawn).
    static let signInCodes: Set<Int> = [50076, 50079, 50158, 53003, 50173, 70008, 700082, 70043, 65001]

    /// Whether Entra ID's answer to a refresh means a person must sign in again: the OAuth errors
    /// `invalid_grant` (the refresh token is unusable) and `interaction_required` ("the request
    /// requires user interaction", the error table of the page above), or one of
    /// ``signInCodes``. A server error or throttling is not: waiting mends those.
    static func refusalNeedsSignIn(_ error: TokenError) -> Bool {
        guard error.kind == .permanent else { return false }
        return error.error == "invalid_grant" || error.error == "interaction_required" || error.code.map { signInCodes.contains($0) } == true
    }

    /// What to tell the person, by the AADSTS code of the refusal.
    static func signInHint(code: Int?, command: String) -> String {
        switch code {
        case 50076, 50079, 50158:
            "Entra ID now requires multi-factor authentication (or another challenge) for this user, which only an interactive sign-in satisfies: run `\(command)` and complete it."
        case 53003:
            "a Conditional Access policy now blocks this user's tokens: an administrator must allow the sign-in (Entra admin center, Sign-in logs, the failure's Conditional Access tab), then run `\(command)`."
        case 70008, 700082:
            "the sign-in expired after going unused too long (90 days by default): run `\(command)`."
        case 70043:
            "Conditional Access sign-in frequency requires a new sign-in: run `\(command)`."
        default:
            "the sign-in is no longer valid (revoked, expired after inactivity, password reset or consent withdrawn): run `\(command)`."
        }
    }

    /// Reads a token endpoint answer: a token, or a classified error. Text from the answer is
    /// masked (``SecretRedaction``, and what this request `sent`): an endpoint or a proxy may
    /// echo the request.
    static func interpret(_ response: HTTPExchangeResponse, endpoint: String, now: Double, sent: [Secret] = []) throws(TokenError) -> AccessToken {
        let body = try? JSONValue(parsing: response.body)
        if response.status == 200 {
            guard let body, let value = body["access_token"]?.stringValue, !value.isEmpty else {
                throw TokenError(
                    kind: .transient, status: 200,
                    message: "the token endpoint answered 200 without an access_token (content type \(response.header("Content-Type") ?? "none"))",
                    hint: "a proxy or captive portal may be answering instead of Entra ID.")
            }
            // v2 sends numbers, v1 numbers as strings.
            let lifetimeText: String? =
                switch body["expires_in"] {
                case .number(let text)?: text
                case .string(let text)?: text
                default: nil
                }
            guard let seconds = lifetimeText.flatMap(Double.init), seconds.isFinite, seconds > 0 else {
                throw TokenError(kind: .transient, status: 200, message: "the token has no usable expires_in")
            }
            return AccessToken(value: Secret(value), lifetime: .milliseconds(Int64(min(seconds, 86_400) * 1000)))
        }
        let error = body?["error"]?.stringValue.map { SecretRedaction.redact($0, also: sent) }
        var code: Int?
        if case .array(let codes)? = body?["error_codes"], case .number(let text)? = codes.first { code = Int(text) }
        let description =
            body?["error_description"]?.stringValue.map { SecretRedaction.redact(String($0.split(separator: "\r\n").first ?? ""), also: sent) }
            ?? "HTTP \(response.status) without an OAuth error body"
        let retryAfter = RetryAfter.parse(response.header("Retry-After"), now: now)?.wait
        // Transient: what waiting mends. 50196 LoopDetected ("too many of the same request in too
        // short a period", https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
        // 7000274 is not: Microsoft.Identity.Web lists it among certificate errors (see
        // TokenError.hint(for:error:)).
        let transient =
            response.status >= 500 || response.status == 429 || error == "temporarily_unavailable"
            || code == 50196 || body == nil
        throw TokenError(
            kind: transient ? .transient : .permanent, status: response.status, error: error, code: code,
            message: description, hint: TokenError.hint(for: code, error: error), retryAfter: retryAfter)
    }
}
