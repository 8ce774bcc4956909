/// Where a tenant's tokens and alerts come from: the sign-in base, the API base and the token
/// audience, per cloud and region (`defender-api.md`, summary 4 and §1.4), or overrides.
public struct DefenderEndpoints: Sendable, Equatable {
    /// `https://login.microsoftonline.com` or an override; no trailing slash.
    public var loginBase: String
    /// `https://api.security.microsoft.com` or a regional/government host or an override.
    public var apiBase: String
    /// The token audience (v1 `resource`; v2 scope is this plus `/.default`).
    public var resource: String

    /// The endpoints of a cloud and optional region, with optional base URL overrides.
    public init(cloud: Cloud, region: Region? = nil, apiURL: String? = nil, loginURL: String? = nil) {
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

    /// `GET /api/alerts`.
    public var alertsURL: String { "\(apiBase)/api/alerts" }

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
