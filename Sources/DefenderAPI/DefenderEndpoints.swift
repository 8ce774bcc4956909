/// Where a tenant's tokens and alerts come from: the sign-in base, the API base and the token
/// audience, per API, cloud and region (`docs/microsoft-apis.md`, summary 4, §1.4 and §6), or overrides.
public struct DefenderEndpoints: Sendable, Equatable {
    /// Which alerts API.
    public var api: AlertsAPI
    /// `https://login.microsoftonline.com` or an override; no trailing slash.
    public var loginBase: String
    /// `https://api.security.microsoft.com` (or a regional or government host), or
    /// `https://graph.microsoft.com` (or a government host), or an override.
    public var apiBase: String
    /// The token audience (v1 `resource`; v2 scope is this plus `/.default`).
    public var resource: String

    /// The endpoints of an API in a cloud and optional region (MDE only), with optional base
    /// URL overrides.
    public init(api: AlertsAPI = .mde, cloud: Cloud, region: Region? = nil, apiURL: String? = nil, loginURL: String? = nil) {
        self.api = api
        switch cloud {
        case .commercial:
            loginBase = "https://login.microsoftonline.com"
            apiBase = region.map { "https://\($0.rawValue).api.security.microsoft.com" } ?? "https://api.security.microsoft.com"
            // The legacy audience is still required, even when calling the newer host (a mismatch is a 403).
            resource = "https://api.securitycenter.microsoft.com"
        case .gcc:
            loginBase = "https://login.microsoftonline.com"
            apiBase = "https://api-gcc.securitycenter.microsoft.us"
            resource = "https://api-gcc.securitycenter.microsoft.us"
        case .gccHigh, .dod:
            loginBase = "https://login.microsoftonline.us"
            apiBase = "https://api-gov.securitycenter.microsoft.us"
            resource = "https://api-gov.securitycenter.microsoft.us"
        }
        if api == .graph {
            // Graph: commercial for GCC too; alerts_v2 is not offered in the China cloud [GD].
            switch cloud {
            case .commercial, .gcc: apiBase = "https://graph.microsoft.com"
            case .gccHigh: apiBase = "https://graph.microsoft.us"
            case .dod: apiBase = "https://dod-graph.microsoft.us"
            }
            resource = apiBase
        }
        if let apiURL { apiBase = Self.trimmed(apiURL) }
        if let loginURL { loginBase = Self.trimmed(loginURL) }
    }

    /// The token endpoint of a tenant.
    public func tokenURL(tenant: String, version: TokenEndpointVersion) -> String {
        switch version {
        case .v1: "\(loginBase)/\(tenant)/oauth2/token"
        case .v2: "\(loginBase)/\(tenant)/oauth2/v2.0/token"
        }
    }

    /// `GET /api/alerts`, or Graph's `GET /v1.0/security/alerts_v2`.
    public var alertsURL: String {
        switch api {
        case .mde: "\(apiBase)/api/alerts"
        case .graph: "\(apiBase)/v1.0/security/alerts_v2"
        }
    }

    /// Where records of `kind` are listed: ``alertsURL``, or Graph's
    /// `GET /v1.0/security/incidents` (which only Graph has).
    public func listURL(_ kind: RecordKind) -> String {
        switch kind {
        case .alert: alertsURL
        case .incident: "\(apiBase)/v1.0/security/incidents"
        }
    }

    private static func trimmed(_ url: String) -> String {
        url.hasSuffix("/") ? String(url.dropLast()) : url
    }
}

/// Which Entra ID token endpoint to use.
public enum TokenEndpointVersion: String, Sendable, CaseIterable {
    /// `/oauth2/token` with `resource` (what Microsoft's MDE samples use).
    case v1
    /// `/oauth2/v2.0/token` with `scope=<resource>/.default` (the default).
    case v2
}
