import Foundation
import OrderedJSON
import Timekeeping

/// A user of a simulated tenant, who can sign in with the device code flow.
public struct SimulatedUser: Sendable, Equatable {
    public var tenantID: String
    public var userPrincipalName: String
    public var displayName: String
    public var objectID: String
    /// The device groups whose alerts the user may see (the alerts' `rbacGroupName`); `nil`:
    /// every alert (a user whose role covers all device groups).
    public var deviceGroups: [String]?

    public init(
        tenantID: String = SimulatorConfiguration.defaultTenant.id, userPrincipalName: String, displayName: String? = nil,
        deviceGroups: [String]? = nil
    ) {
        self.tenantID = tenantID.lowercased()
        self.userPrincipalName = userPrincipalName.lowercased()
        self.displayName = displayName ?? userPrincipalName
        self.objectID = UUID().uuidString.lowercased()
        self.deviceGroups = deviceGroups
    }
}

/// User context at the token endpoint (delegated permissions), as Entra ID implements it
/// [DC]: the device authorization grant (`/devicecode`, then polling `/token`), and refresh
/// tokens. A refresh token is rotated at each use; the one used stays valid (as Entra's do)
/// until the user's tokens are revoked, so a client that crashed before storing the new one can
/// still go on, and a client that never stores the new one shows in ``reused``.
struct DelegatedGrants: Sendable {
    static let deviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code"
    /// How every refresh token the simulator issues begins.
    static let refreshTokenPrefix = "0.SIMRT."
    static let verificationURI = "https://microsoft.com/devicelogin"
    /// Scopes of OpenID Connect, not of a resource.
    static let openIDScopes: Set<String> = ["openid", "profile", "email", "offline_access"]

    struct DeviceAuthorization {
        enum State: Equatable {
            case pending
            case approved(SimulatedUser)
            case declined
            case redeemed
        }

        var tenantID: String
        var clientID: String
        var scopes: RequestedScopes
        var userCode: String
        var expiresAt: Timestamp
        var interval: Int
        var lastPoll: Timestamp?
        var state: State
    }

    struct RefreshGrant {
        var tenantID: String
        var clientID: String
        var user: SimulatedUser
        var scopes: RequestedScopes
        var issuedAt: Timestamp
        var redeemed = false
        var revoked = false
    }

    /// How every refresh of a user's tokens is refused until the user signs in again (the control
    /// API's `POST /_simulator/users/refresh-failure`): MFA or Conditional Access now required,
    /// the sign-in expired... An AADSTS code and the OAuth `error` beside it.
    struct RefreshRefusal: Equatable {
        var code: EntraErrorCode
        var error: String
    }

    /// The refusals a user's refresh can be given, with the OAuth `error` each comes with unless
    /// told otherwise: `interaction_required` ("the request requires user interaction, for
    /// example an additional authentication step", the error table of
    /// https://learn.microsoft.com/entra/identity-platform/reference-error-codes) for MFA and
    /// Conditional Access, `invalid_grant` for a refresh token that is no longer valid.
    static let refreshRefusalErrors: [EntraErrorCode: String] = [
        .strongAuthRequired: "interaction_required", .strongAuthEnrollmentRequired: "interaction_required",
        .externalSecurityChallenge: "interaction_required", .blockedByConditionalAccess: "interaction_required",
        .refreshTokenInactive: "invalid_grant", .freshTokenNeeded: "invalid_grant",
    ]

    /// The `error_description` text of a refused refresh (after the `AADSTSnnnn: `), after the
    /// wording of Microsoft's reference.
    static func refusalText(_ code: EntraErrorCode, resource: String, issuedAt: Timestamp) -> String {
        switch code {
        case .strongAuthRequired:
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '\(resource)'."
        case .strongAuthEnrollmentRequired:
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access '\(resource)'."
        case .externalSecurityChallenge:
            "External security challenge not satisfied."
        case .blockedByConditionalAccess:
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance."
        case .refreshTokenInactive:
            "The refresh token has expired due to inactivity. The token was issued on \(issuedAt) and was inactive for 90.00:00:00."
        default:
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password."
        }
    }

    var users: [SimulatedUser] = []
    /// device_code -> its authorization.
    var codes: [String: DeviceAuthorization] = [:]
    var refreshTokens: [String: RefreshGrant] = [:]
    /// `expires_in` and `interval` of the device codes handed out (Entra: 900 and 5).
    var codeLifetime = 900
    var interval = 5
    /// Polls of `/token` with a device code, redemptions of refresh tokens, and redemptions of
    /// a refresh token that had been redeemed before (a client that did not keep the rotated one).
    var polls = 0
    var redeemed = 0
    var reused = 0
    /// Answers a poll sooner than `interval` after the last with RFC 8628's `slow_down` (and
    /// adds 5 s to the interval), which Entra ID's documentation does not list.
    var slowDown = false
    /// User principal name -> how that user's refreshes are refused, until the user signs in again.
    var refreshRefusals: [String: RefreshRefusal] = [:]
    /// A refresh token unused this long (seconds) is refused with AADSTS700082: 90 days, the
    /// default lifetime of refresh tokens outside single-page apps
    /// (https://learn.microsoft.com/entra/identity-platform/refresh-tokens).
    var refreshTokenInactivity: Int64 = 90 * 86_400
    /// A device code answer's `message` and `verification_uri` as told through the control API
    /// (`POST /_simulator/devicecode/answer`): to play a hostile or foreign answer to `login`.
    var answerMessage: String?
    var answerVerificationURI: String?
}

/// The scopes a user-context request asks for: OpenID Connect's, and the permissions of one
/// resource (`https://api.securitycenter.microsoft.com/Alert.Read`; a bare name such as
/// `SecurityAlert.Read.All` is a Microsoft Graph permission, as Entra ID reads it).
struct RequestedScopes: Equatable {
    var openID: Set<String>
    var audience: String
    /// The resource as requested (`https://api.securitycenter.microsoft.com`).
    var resource: String
    /// Permission names; `.default` for every permission consented to the app.
    var permissions: [String]

    init?(_ text: String) {
        var openID: Set<String> = []
        var resources: Set<String> = []
        var permissions: [String] = []
        for scope in text.split(separator: " ").map(String.init) {
            if DelegatedGrants.openIDScopes.contains(scope) {
                openID.insert(scope)
                continue
            }
            guard let slash = scope.lastIndex(of: "/"), scope.hasPrefix("https://") else {
                resources.insert(Resource.graph)
                permissions.append(scope)
                continue
            }
            resources.insert(String(scope[..<slash]))
            permissions.append(String(scope[scope.index(after: slash)...]))
        }
        guard resources.count == 1, let resource = resources.first, let audience = Resource.audience(for: resource) else { return nil }
        (self.openID, self.resource, self.audience, self.permissions) = (openID, resource, audience, permissions)
    }

    /// The delegated permissions the token carries (`scp`): those asked for, all of them
    /// consented; or `nil` when one is not consented.
    func granted(by app: RegisteredApp) -> [String]? {
        let consented = audience == Resource.graph ? app.graphDelegatedScopes : app.delegatedScopes
        if permissions == [".default"] { return consented }
        return permissions.allSatisfy(consented.contains) ? permissions : nil
    }

    /// The `scope` of the answer: the permissions as URIs of their resource (Graph's bare), and
    /// the OpenID Connect scopes but `offline_access`.
    func answered(_ granted: [String]) -> String {
        let permissions = audience == Resource.graph ? granted : granted.map { "\(resource)/\($0)" }
        return (permissions + openID.subtracting(["offline_access"]).sorted()).joined(separator: " ")
    }
}

extension TokenEndpoint {
    /// `POST /{tenant}/oauth2/v2.0/devicecode` (form `client_id`, `scope`).
    mutating func deviceAuthorization(_ request: SimulatorRequest, tenantName: String, now: Timestamp) -> SimulatorResponse {
        guard request.method == "POST" else {
            return Self.error(
                405, "invalid_request", .methodNotAllowed, "The endpoint only accepts POST requests. Received a \(request.method) request.", now: now)
        }
        guard let tenant = tenants.first(where: { $0.answers(to: tenantName) }) else {
            return Self.error(
                400, "invalid_request", .tenantNotFound,
                "Tenant '\(tenantName)' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.",
                now: now)
        }
        let form = request.form
        guard let clientID = form["client_id"]?.lowercased(), !clientID.isEmpty else { return Self.missing("client_id", now: now) }
        guard apps.contains(where: { $0.tenantID == tenant.id && $0.clientID == clientID }) else {
            return Self.error(
                400, "unauthorized_client", .applicationNotFound,
                "Application with identifier '\(clientID)' was not found in the directory '\(tenant.displayName)'.", now: now)
        }
        guard let text = form["scope"], !text.isEmpty else { return Self.missing("scope", now: now) }
        guard let scopes = RequestedScopes(text) else {
            return Self.error(
                400, "invalid_scope", .invalidScope,
                "The provided value for the input parameter 'scope' is not valid. The scope \(text) is not valid: name the permissions of one resource.",
                now: now)
        }
        let deviceCode = Self.randomCode(bytes: 48)
        let userCode = String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(9)).uppercased()
        delegated.codes[deviceCode] = DelegatedGrants.DeviceAuthorization(
            tenantID: tenant.id, clientID: clientID, scopes: scopes, userCode: userCode,
            expiresAt: now.adding(ticks: Int64(delegated.codeLifetime) * 10_000_000), interval: delegated.interval, lastPoll: nil, state: .pending)
        let uri = delegated.answerVerificationURI ?? DelegatedGrants.verificationURI
        return .json(
            200,
            .object([
                ("user_code", .string(userCode)), ("device_code", .string(deviceCode)), ("verification_uri", .string(uri)),
                ("expires_in", .int(delegated.codeLifetime)), ("interval", .int(delegated.interval)),
                (
                    "message",
                    .string(
                        delegated.answerMessage?.replacingOccurrences(of: "{code}", with: userCode)
                            ?? "To sign in, use a web browser to open the page \(uri) and enter the code \(userCode) to authenticate.")
                ),
            ]), headers: Self.headers)
    }

    /// The device code and refresh token grants at `/oauth2/v2.0/token`.
    mutating func delegatedGrant(_ grant: String, form: [String: String], tenant: SimulatedTenant, now: Timestamp) -> SimulatorResponse {
        guard let clientID = form["client_id"]?.lowercased(), !clientID.isEmpty else { return Self.missing("client_id", now: now) }
        guard let app = apps.first(where: { $0.tenantID == tenant.id && $0.clientID == clientID }) else {
            return Self.error(
                400, "unauthorized_client", .applicationNotFound,
                "Application with identifier '\(clientID)' was not found in the directory '\(tenant.displayName)'.", now: now)
        }
        // A confidential client proves itself here too; a public one has nothing to prove.
        if !app.isPublicClient {
            guard let secret = form["client_secret"] else {
                return Self.error(
                    401, "invalid_client", .credentialMissing,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.", now: now)
            }
            guard app.secrets.contains(secret) else {
                return Self.error(
                    401, "invalid_client", .invalidClientSecret,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '\(app.clientID)'.",
                    now: now)
            }
        }
        if grant == DelegatedGrants.deviceCodeGrant {
            return redeemDeviceCode(form, app: app, tenant: tenant, now: now)
        }
        return redeemRefreshToken(form, app: app, tenant: tenant, now: now)
    }

    private mutating func redeemDeviceCode(_ form: [String: String], app: RegisteredApp, tenant: SimulatedTenant, now: Timestamp) -> SimulatorResponse
    {
        guard let code = form["device_code"], !code.isEmpty else { return Self.missing("device_code", now: now) }
        delegated.polls += 1
        guard var authorization = delegated.codes[code], authorization.clientID == app.clientID, authorization.tenantID == tenant.id,
            authorization.state != .redeemed
        else {
            return Self.error(400, "bad_verification_code", .badVerificationCode, "The device_code was not recognized.", now: now)
        }
        defer { delegated.codes[code] = authorization }
        guard now < authorization.expiresAt else {
            return Self.error(400, "expired_token", .codeExpired, "Verification code expired.", now: now)
        }
        switch authorization.state {
        case .pending:
            if delegated.slowDown, let last = authorization.lastPoll, now < last.adding(ticks: Int64(authorization.interval) * 10_000_000) {
                authorization.interval += 5
                authorization.lastPoll = now
                return Self.error(
                    400, "slow_down", nil, "Polling too fast: wait at least \(authorization.interval) seconds between requests.", now: now)
            }
            authorization.lastPoll = now
            return Self.error(
                400, "authorization_pending", .authorizationPending,
                "The provided request has not yet been authorized by the user. The user must input their code.", now: now)
        case .declined:
            return Self.error(400, "authorization_declined", nil, "The end user denied the authorization request.", now: now)
        case .redeemed:
            return Self.error(400, "bad_verification_code", .badVerificationCode, "The device_code was not recognized.", now: now)
        case .approved(let user):
            authorization.state = .redeemed
            return userTokens(app: app, tenant: tenant, user: user, scopes: authorization.scopes, now: now)
        }
    }

    private mutating func redeemRefreshToken(
        _ form: [String: String], app: RegisteredApp, tenant: SimulatedTenant, now: Timestamp
    ) -> SimulatorResponse {
        guard let token = form["refresh_token"], !token.isEmpty else { return Self.missing("refresh_token", now: now) }
        guard let grant = delegated.refreshTokens[token], grant.clientID == app.clientID, grant.tenantID == tenant.id else {
            return Self.error(400, "invalid_grant", .malformedRequest, "Invalid request. Request is malformed or invalid.", now: now)
        }
        guard !grant.revoked else {
            return Self.error(
                400, "invalid_grant", .freshTokenNeeded,
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
                now: now)
        }
        if let refusal = delegated.refreshRefusals[grant.user.userPrincipalName] {
            return Self.error(
                400, refusal.error, refusal.code,
                DelegatedGrants.refusalText(refusal.code, resource: grant.scopes.resource, issuedAt: grant.issuedAt), now: now)
        }
        guard now < grant.issuedAt.adding(ticks: delegated.refreshTokenInactivity * 10_000_000) else {
            return Self.error(
                400, "invalid_grant", .refreshTokenInactive,
                DelegatedGrants.refusalText(.refreshTokenInactive, resource: grant.scopes.resource, issuedAt: grant.issuedAt), now: now)
        }
        delegated.redeemed += 1
        if grant.redeemed { delegated.reused += 1 }
        delegated.refreshTokens[token]?.redeemed = true
        var scopes = grant.scopes
        if let text = form["scope"] {
            guard let asked = RequestedScopes(text) else {
                return Self.error(
                    400, "invalid_scope", .invalidScope,
                    "The provided value for the input parameter 'scope' is not valid. The scope \(text) is not valid.", now: now)
            }
            scopes = asked
        }
        return userTokens(app: app, tenant: tenant, user: grant.user, scopes: scopes, now: now)
    }

    /// An access token with the user's delegated permissions (`scp`), a refresh token when
    /// `offline_access` was asked for, an ID token when `openid` was.
    private mutating func userTokens(
        app: RegisteredApp, tenant: SimulatedTenant, user: SimulatedUser, scopes: RequestedScopes, now: Timestamp
    ) -> SimulatorResponse {
        guard let granted = scopes.granted(by: app) else {
            return Self.error(
                400, "invalid_grant", .delegationDoesNotExist,
                "The user or administrator has not consented to use the application with ID '\(app.clientID)' named '\(app.displayName)'. Send an interactive authorization request for this user and resource.",
                now: now)
        }
        let issuedAt = now.ticks / 10_000_000
        let expiresAt = issuedAt + Int64(tokenLifetime)
        let claims: [(String, JSONValue)] = [
            ("aud", .string(scopes.audience)), ("iss", .string("https://sts.windows.net/\(tenant.id)/")),
            ("iat", .number("\(issuedAt)")), ("nbf", .number("\(issuedAt)")), ("exp", .number("\(expiresAt)")),
            ("amr", .array([.string("pwd"), .string("mfa")])), ("app_displayname", .string(app.displayName)), ("appid", .string(app.clientID)),
            ("appidacr", .string("0")), ("name", .string(user.displayName)), ("oid", .string(user.objectID)),
            ("scp", .string(granted.joined(separator: " "))), ("sub", .string(user.objectID)), ("tid", .string(tenant.id)),
            ("unique_name", .string(user.userPrincipalName)), ("upn", .string(user.userPrincipalName)),
            ("uti", .string(UUID().uuidString.lowercased())), ("ver", .string("1.0")),
        ]
        let access = Self.jwt(claims)
        issued[access] = IssuedToken(
            tenantID: tenant.id, clientID: app.clientID, audience: scopes.audience, roles: [],
            expiresAt: Timestamp(ticks: expiresAt * 10_000_000), scopes: granted, user: user)
        var members: [(String, JSONValue)] = [
            ("token_type", .string("Bearer")), ("scope", .string(scopes.answered(granted))), ("expires_in", .int(tokenLifetime)),
            ("ext_expires_in", .int(tokenLifetime)), ("access_token", .string(access)),
        ]
        if scopes.openID.contains("offline_access") {
            // Recognisable, as Entra's ("0.A...") are: tests look for it in every output.
            let refresh = DelegatedGrants.refreshTokenPrefix + Self.randomCode(bytes: 64)
            delegated.refreshTokens[refresh] = DelegatedGrants.RefreshGrant(
                tenantID: tenant.id, clientID: app.clientID, user: user, scopes: scopes,
                issuedAt: now)
            members.append(("refresh_token", .string(refresh)))
        }
        if scopes.openID.contains("openid") {
            members.append(
                (
                    "id_token",
                    .string(
                        Self.jwt([
                            ("aud", .string(app.clientID)), ("iss", .string("https://login.microsoftonline.com/\(tenant.id)/v2.0")),
                            ("iat", .number("\(issuedAt)")), ("nbf", .number("\(issuedAt)")), ("exp", .number("\(expiresAt)")),
                            ("name", .string(user.displayName)), ("oid", .string(user.objectID)),
                            ("preferred_username", .string(user.userPrincipalName)),
                            ("sub", .string(user.objectID)), ("tid", .string(tenant.id)), ("ver", .string("2.0")),
                        ]))
                ))
        }
        return .json(200, .object(members), headers: Self.headers)
    }

    /// A JWT-shaped token with these claims and a fake signature.
    static func jwt(_ claims: [(String, JSONValue)]) -> String {
        let header = JSONValue.object([("typ", .string("JWT")), ("alg", .string("RS256")), ("kid", .string("SIMULATOR-NOT-A-REAL-KEY"))])
        return [header.data, JSONValue.object(claims).data, Data("simulator-signature-not-valid".utf8)].map(base64URL).joined(separator: ".")
    }

    static func randomCode(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return base64URL(Data((0..<bytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) }))
    }

    // MARK: Control

    /// Approves (or declines, with `user` nil) the sign-in of the device code with `userCode`.
    mutating func decide(userCode: String, user: String?) throws(SimulatorSetupError) {
        guard let (code, authorization) = delegated.codes.first(where: { $0.value.userCode == userCode.uppercased() }),
            authorization.state == .pending
        else { throw SimulatorSetupError("no pending sign-in with the code \(userCode)") }
        guard let user else {
            delegated.codes[code]?.state = .declined
            return
        }
        guard let known = delegated.users.first(where: { $0.userPrincipalName == user.lowercased() && $0.tenantID == authorization.tenantID }) else {
            throw SimulatorSetupError("no user \(user) in tenant \(authorization.tenantID): add one with POST /_simulator/users")
        }
        delegated.codes[code]?.state = .approved(known)
        // The person signed in interactively: the challenge that refused their refreshes is met.
        delegated.refreshRefusals[known.userPrincipalName] = nil
    }

    /// Refuses every refresh of the user's tokens with `code` (and `error`, or the one that code
    /// comes with) until the user signs in again; nil: refreshes work again.
    mutating func refuseRefreshes(user: String, code: EntraErrorCode?, error: String?) throws(SimulatorSetupError) {
        let upn = user.lowercased()
        guard delegated.users.contains(where: { $0.userPrincipalName == upn }) else { throw SimulatorSetupError("no user \(user)") }
        guard let code else {
            delegated.refreshRefusals[upn] = nil
            return
        }
        guard let usual = DelegatedGrants.refreshRefusalErrors[code] else {
            let known = DelegatedGrants.refreshRefusalErrors.keys.map { String($0.rawValue) }.sorted().joined(separator: ", ")
            throw SimulatorSetupError("a refresh is refused with one of \(known), not \(code.rawValue)")
        }
        delegated.refreshRefusals[upn] = DelegatedGrants.RefreshRefusal(code: code, error: error ?? usual)
    }

    /// Revokes every refresh and access token of the user (as a password reset does).
    mutating func revoke(user: String) throws(SimulatorSetupError) {
        let upn = user.lowercased()
        guard delegated.users.contains(where: { $0.userPrincipalName == upn }) else { throw SimulatorSetupError("no user \(user)") }
        for (token, grant) in delegated.refreshTokens where grant.user.userPrincipalName == upn { delegated.refreshTokens[token]?.revoked = true }
        for (token, issuedToken) in issued where issuedToken.user?.userPrincipalName == upn { issued[token]?.revoked = true }
    }
}
