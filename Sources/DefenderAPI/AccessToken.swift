import Foundation
import OrderedJSON

/// An access token and what the daemon may know about it. The token itself is a ``Secret``;
/// the claims are decoded (not verified: only the API can do that) for `test-auth` and logs.
public struct AccessToken: Sendable, Equatable {
    public let value: Secret
    /// `expires_in` as the token endpoint said.
    public let lifetime: Duration
    /// `roles` (application permissions granted and consented).
    public let roles: [String]
    public let audience: String?
    public let tenantID: String?
    public let appID: String?
    /// `scp`: delegated permissions, in a token issued to a signed-in user.
    public let scopes: [String]
    /// The signed-in user (`upn`, else `preferred_username` or `unique_name`); nil in an app token.
    public let user: String?

    public init(value: Secret, lifetime: Duration) {
        self.value = value
        self.lifetime = lifetime
        let claims = value.withValue(Self.claims(of:))
        if case .array(let roles)? = claims?["roles"] { self.roles = roles.compactMap(\.stringValue) } else { roles = [] }
        audience = claims?["aud"]?.stringValue
        tenantID = claims?["tid"]?.stringValue
        appID = claims?["appid"]?.stringValue ?? claims?["azp"]?.stringValue
        scopes = claims?["scp"]?.stringValue?.split(separator: " ").map(String.init) ?? []
        user = claims?["upn"]?.stringValue ?? claims?["preferred_username"]?.stringValue ?? claims?["unique_name"]?.stringValue
    }

    /// The claims of a JWT-shaped token (decoded, not verified), or nil.
    static func claims(of token: String) -> JSONValue? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = Base64URL.decode(parts[1]) else { return nil }
        return try? JSONValue(parsing: payload)
    }

    /// Whether the token carries a role (app token) or a delegated permission (user token) that
    /// can read the alerts of `api`.
    public func canReadAlerts(of api: AlertsAPI) -> Bool {
        guard user != nil else { return api.readRoles.contains(where: roles.contains) }
        return api.delegatedReadPermissions.contains(where: scopes.contains)
    }

    /// Whether the token may read Microsoft Graph's incidents: `SecurityIncident.Read.All` (or
    /// `.ReadWrite.All`), an application role or, signed in, a delegated permission of that name.
    public var canReadIncidents: Bool {
        RecordKind.incident.graphReadRoles.contains(where: (user == nil ? roles : scopes).contains)
    }
}
