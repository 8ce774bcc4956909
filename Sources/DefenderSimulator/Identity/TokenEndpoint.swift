import Foundation
import OrderedJSON
import Timekeeping

/// An access token the simulator issued, as the API checks it.
struct IssuedToken: Sendable {
    var tenantID: String
    var clientID: String
    var audience: String
    /// Application permissions (`roles`, app-only tokens).
    var roles: [String]
    var expiresAt: Timestamp
    var revoked = false
    /// Delegated permissions (`scp`) and the signed-in user, for a token issued to a user.
    var scopes: [String] = []
    var user: SimulatedUser? = nil
}

/// Which token endpoint a request came to.
public enum TokenEndpointVersion: String, Sendable {
    case v1, v2
}

/// The simulated Entra ID token endpoint: the client credentials grant (app context), and
/// the device code and refresh token grants (user context, ``DelegatedGrants``).
struct TokenEndpoint {
    var tenants: [SimulatedTenant]
    var apps: [RegisteredApp]
    var tokenLifetime: Int
    var issued: [String: IssuedToken] = [:]
    var seenAssertionIDs: Set<String> = []
    /// Client assertions accepted although their `jti` had been seen before.
    var reusedAssertions = 0
    /// User context: the users who may sign in, device codes handed out, refresh tokens issued.
    var delegated = DelegatedGrants()

    static let headers = [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache"), ("Expires", "-1")]

    mutating func handle(_ request: SimulatorRequest, tenantName: String, version: TokenEndpointVersion, now: Timestamp) -> SimulatorResponse {
        guard request.method == "POST" else {
            return Self.error(
                405, "invalid_request", .methodNotAllowed, "The endpoint only accepts POST requests. Received a \(request.method) request.", now: now)
        }
        guard let tenant = tenants.first(where: { $0.answers(to: tenantName) }) else {
            return Self.error(
                400, "invalid_request", .tenantNotFound,
                "Tenant '\(tenantName)' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.",
                now: now)
        }
        let form = Self.form(of: request)
        guard let grant = form["grant_type"] else { return Self.missing("grant_type", now: now) }
        switch grant {
        case "client_credentials": break
        case DelegatedGrants.deviceCodeGrant, "refresh_token":
            guard version == .v2 else {
                return Self.error(
                    400, "unsupported_grant_type", .unsupportedGrantType,
                    "The app requested an unsupported grant type '\(grant)' on the v1 endpoint; use /oauth2/v2.0/token.", now: now)
            }
            return delegatedGrant(grant, form: form, tenant: tenant, now: now)
        default:
            return Self.error(
                400, "unsupported_grant_type", .unsupportedGrantType,
                "The app requested an unsupported grant type '\(grant)'. This simulator issues tokens for client_credentials, device_code and refresh_token.",
                now: now)
        }
        guard let clientID = form["client_id"]?.lowercased(), !clientID.isEmpty else { return Self.missing("client_id", now: now) }

        let requestedResource: String
        do { requestedResource = try Self.requestedResource(form, version: version, now: now) } catch { return error.response }
        guard let audience = Resource.audience(for: requestedResource) else {
            return Self.error(
                400, "invalid_resource", .resourceNotFound,
                "The resource principal named \(requestedResource) was not found in the tenant named \(tenant.displayName). This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                now: now)
        }
        guard let app = apps.first(where: { $0.tenantID == tenant.id && $0.clientID == clientID }) else {
            return Self.error(
                400, "unauthorized_client", .applicationNotFound,
                "Application with identifier '\(clientID)' was not found in the directory '\(tenant.displayName)'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                now: now)
        }

        do { try authenticate(app, form: form, tenant: tenant, tenantName: tenantName, baseURL: request.baseURL, now: now) } catch {
            return error.response
        }

        let roles = audience == Resource.graph ? app.graphRoles : app.roles
        let issuedAt = now.ticks / 10_000_000
        let expiresAt = issuedAt + Int64(tokenLifetime)
        let token = Self.accessToken(tenant: tenant.id, app: app, audience: audience, roles: roles, issuedAt: issuedAt, expiresAt: expiresAt)
        issued[token] = IssuedToken(
            tenantID: tenant.id, clientID: app.clientID, audience: audience, roles: roles,
            expiresAt: Timestamp(ticks: expiresAt * 10_000_000))
        let body: JSONValue
        switch version {
        case .v1:
            body = .object([
                ("token_type", .string("Bearer")), ("expires_in", .string("\(tokenLifetime)")),
                ("ext_expires_in", .string("\(tokenLifetime)")), ("expires_on", .string("\(expiresAt)")),
                ("not_before", .string("\(issuedAt - 300)")), ("resource", .string(requestedResource)),
                ("access_token", .string(token)),
            ])
        case .v2:
            body = .object([
                ("token_type", .string("Bearer")), ("expires_in", .int(tokenLifetime)),
                ("ext_expires_in", .int(tokenLifetime)), ("access_token", .string(token)),
            ])
        }
        return .json(200, body, headers: Self.headers)
    }

    /// The request's form, with the client ID and secret of HTTP Basic (RFC 6749 §2.3.1: each
    /// form-encoded) where the form has none.
    static func form(of request: SimulatorRequest) -> [String: String] {
        var form = request.form
        guard let authorization = request.header("Authorization"), authorization.lowercased().hasPrefix("basic "),
            let decoded = Data(base64Encoded: String(authorization.dropFirst(6))).map({ String(decoding: $0, as: UTF8.self) }),
            let colon = decoded.firstIndex(of: ":")
        else { return form }
        let id = String(decoded[..<colon]).removingPercentEncoding ?? ""
        let secret = String(decoded[decoded.index(after: colon)...]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
        form["client_id"] = form["client_id"] ?? id
        form["client_secret"] = form["client_secret"] ?? secret
        return form
    }

    /// The resource a client credentials request asks a token for: v1's `resource`, or v2's one
    /// `scope` of the form `<resource>/.default`.
    static func requestedResource(_ form: [String: String], version: TokenEndpointVersion, now: Timestamp) throws(Refused) -> String {
        switch version {
        case .v1:
            guard let resource = form["resource"], !resource.isEmpty else { throw Refused(Self.missing("resource", now: now)) }
            return resource
        case .v2:
            if form["resource"] != nil {
                throw Refused(
                    Self.error(
                        400, "invalid_request", .resourceParameterNotSupported, "The 'resource' request parameter is not supported.", now: now))
            }
            guard let scope = form["scope"], !scope.isEmpty else { throw Refused(Self.missing("scope", now: now)) }
            let scopes = scope.split(separator: " ").map(String.init)
            guard scopes.count == 1, let only = scopes.first, only.hasSuffix("/.default") else {
                throw Refused(
                    Self.error(
                        400, "invalid_scope", .invalidScope,
                        "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope \(scope) is not valid. The client credentials flow accepts exactly one scope of the form <resource>/.default.",
                        now: now))
            }
            return String(only.dropLast("/.default".count))
        }
    }

    /// Checks the client's secret or certificate assertion (audiences: this endpoint under any of
    /// the tenant's names); a reused assertion is counted.
    mutating func authenticate(
        _ app: RegisteredApp, form: [String: String], tenant: SimulatedTenant, tenantName: String, baseURL: String, now: Timestamp
    ) throws(Refused) {
        if let secret = form["client_secret"] {
            guard app.secrets.contains(secret) else {
                throw Refused(
                    Self.error(
                        401, "invalid_client", .invalidClientSecret,
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '\(app.clientID)'.",
                        now: now))
            }
        } else if let assertion = form["client_assertion"] {
            guard form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" else {
                throw Refused(
                    Self.error(
                        400, "invalid_request", .invalidJWT,
                        "Invalid client_assertion_type: expected 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.", now: now))
            }
            let audiences = ([tenantName] + [tenant.id] + tenant.domains).flatMap { name in
                ["\(baseURL)/\(name)/oauth2/v2.0/token", "\(baseURL)/\(name)/oauth2/token", "\(baseURL)/\(name)/v2.0"]
            }
            do {
                var reused = false
                try ClientAssertionVerifier().verify(
                    assertion, app: app, acceptedAudiences: audiences, now: now, seenIDs: &seenAssertionIDs, reused: &reused)
                if reused { reusedAssertions += 1 }
            } catch {
                throw Refused(Self.error(401, "invalid_client", error.code, error.message, now: now))
            }
        } else {
            throw Refused(
                Self.error(
                    401, "invalid_client", .credentialMissing,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.", now: now))
        }
    }

    /// A JWT-shaped token with the claims of a real app-only token and a fake signature.
    static func accessToken(tenant: String, app: RegisteredApp, audience: String, roles: [String], issuedAt: Int64, expiresAt: Int64) -> String {
        let header = JSONValue.object([
            ("typ", .string("JWT")), ("alg", .string("RS256")), ("x5t", .string("SIMULATOR-NOT-A-REAL-KEY")),
            ("kid", .string("SIMULATOR-NOT-A-REAL-KEY")),
        ])
        let oid = UUID().uuidString.lowercased()
        let payload = JSONValue.object([
            ("aud", .string(audience)), ("iss", .string("https://sts.windows.net/\(tenant)/")),
            ("iat", .number("\(issuedAt)")), ("nbf", .number("\(issuedAt)")), ("exp", .number("\(expiresAt)")),
            ("app_displayname", .string(app.displayName)), ("appid", .string(app.clientID)), ("appidacr", .string("1")),
            ("idp", .string("https://sts.windows.net/\(tenant)/")), ("oid", .string(oid)),
            ("roles", .array(roles.map { .string($0) })), ("sub", .string(oid)), ("tid", .string(tenant)),
            ("uti", .string(UUID().uuidString.lowercased())), ("ver", .string("1.0")),
        ])
        return [header.data, payload.data, Data("simulator-signature-not-valid".utf8)].map(base64URL).joined(separator: ".")
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func missing(_ parameter: String, now: Timestamp) -> SimulatorResponse {
        error(400, "invalid_request", .missingParameter, "The request body must contain the following parameter: '\(parameter)'.", now: now)
    }

    /// The Entra ID error shape, with AADSTS code, trace and correlation ids and timestamp.
    /// An OAuth error body as Entra ID writes it; `code` nil for a failure without an AADSTS
    /// code of its own (a simulated outage: no number is invented).
    static func error(_ status: Int, _ error: String, _ code: EntraErrorCode?, _ message: String, now: Timestamp) -> SimulatorResponse {
        let code = code?.rawValue
        let trace = UUID().uuidString.lowercased()
        let correlation = UUID().uuidString.lowercased()
        let stamp = now.writtenWith(0).description.replacingOccurrences(of: "T", with: " ")
        let description =
            (code.map { "AADSTS\($0): " } ?? "") + "\(message)\r\nTrace ID: \(trace)\r\nCorrelation ID: \(correlation)\r\nTimestamp: \(stamp)"
        var members: [(String, JSONValue)] = [("error", .string(error)), ("error_description", .string(description))]
        if let code { members.append(("error_codes", .array([.int(code)]))) }
        members += [("timestamp", .string(stamp)), ("trace_id", .string(trace)), ("correlation_id", .string(correlation))]
        if let code { members.append(("error_uri", .string("https://login.microsoftonline.com/error?code=\(code)"))) }
        return .json(status, .object(members), headers: headers)
    }
}

/// A token request refused: the answer Entra ID gives.
struct Refused: Error {
    var response: SimulatorResponse
    init(_ response: SimulatorResponse) { self.response = response }
}
