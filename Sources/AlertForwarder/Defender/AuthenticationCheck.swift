import DefenderAPI
import Logging

/// `test-auth`: does a tenant's app registration work, step by step, with a fix for each failure.
public enum AuthenticationCheck {
    /// The verdict of one step.
    public struct Step: Sendable, Equatable {
        public var name: String
        public var passed: Bool
        public var detail: String
        public var fix: String?
    }

    /// Checks a tenant from its configuration (the credential first).
    public static func run(
        tenant: TenantConfiguration, transport: any HTTPTransport, userTokens: UserTokenStorage? = nil,
        logger: Logger
    ) async -> [Step] {
        do {
            return await run(
                try TenantClients(tenant: tenant, transport: transport, userTokens: userTokens, logger: logger),
                incidents: tenant.records.contains(.incident))
        } catch {
            return [
                Step(
                    name: "credential", passed: false, detail: error.description,
                    fix: "use the certificate that is registered on the app, with its own private key.")
            ]
        }
    }

    /// Gets a token, checks its roles, calls `GET /api/alerts?$top=1` (Graph:
    /// `GET /v1.0/security/alerts_v2?$top=1`); with `incidents` (`records` names them), checks
    /// the incident permission and calls `GET /v1.0/security/incidents?$top=1`. Stops at the
    /// first failure (later steps depend on earlier ones). Never prints the token.
    public static func run(_ connection: TenantClients, incidents: Bool = false) async -> [Step] {
        var steps: [Step] = []
        let token: AccessToken
        switch await capture({ () async throws(TokenError) in try await connection.tokens.token() }) {
        case .success(let value):
            token = value
            steps.append(
                Step(
                    name: "token", passed: true,
                    detail:
                        "issued by \(connection.endpoints.loginBase) for \(token.audience ?? "?") (tenant \(token.tenantID ?? "?"), app \(token.appID ?? "?")), valid \(token.lifetime.components.seconds)s"
                ))
        case .failure(let error):
            steps.append(
                Step(
                    name: "token", passed: false, detail: error.message + (error.code.map { " (AADSTS\($0))" } ?? ""),
                    fix: error.hint ?? "check tenant_id, client_id, the credential and cloud."))
            return steps
        }

        let roles = token.roles.isEmpty ? "none" : token.roles.joined(separator: ", ")
        let api = connection.endpoints.api
        if let audience = token.audience, Self.isOtherAudience(audience, than: connection.endpoints) {
            steps.append(
                Step(
                    name: "permissions", passed: false,
                    detail: "the token is for \(audience), not for \(connection.endpoints.resource) (api = \"\(api.rawValue)\")",
                    fix:
                        "the token endpoint gave a token for another API: check api, cloud and login_url (a stand-in of Entra ID may ignore the scope)."
                ))
            return steps
        }
        if let user = token.user {
            // User context: the person's delegated permissions, and what they may see.
            let scopes = token.scopes.isEmpty ? "none" : token.scopes.joined(separator: ", ")
            guard token.canReadAlerts(of: api) else {
                steps.append(
                    Step(
                        name: "permissions", passed: false, detail: "signed in as \(user); delegated permissions in the token: \(scopes)",
                        fix: delegatedPermissionFix(api)))
                return steps
            }
            steps.append(
                Step(
                    name: "permissions", passed: true,
                    detail: "signed in as \(user); delegated permissions: \(scopes); alerts are those of the device groups this user may see, no more"
                ))
        } else {
            guard token.canReadAlerts(of: api) else {
                steps.append(Step(name: "permissions", passed: false, detail: "application roles in the token: \(roles)", fix: permissionFix(api)))
                return steps
            }
            steps.append(Step(name: "permissions", passed: true, detail: "application roles: \(roles)"))
        }

        switch await capture({ () async throws(DefenderAPIError) in try await connection.alerts.probe() }) {
        case .success(let count):
            steps.append(
                Step(
                    name: "alerts API", passed: true,
                    detail: "GET \(connection.endpoints.alertsURL)?$top=1 answered 200 (\(count) alert\(count == 1 ? "" : "s"))"))
        case .failure(let error):
            steps.append(Step(name: "alerts API", passed: false, detail: error.description, fix: fix(for: error)))
            return steps
        }
        guard incidents else { return steps }
        guard token.canReadIncidents else {
            let granted =
                token.user == nil
                ? "application roles in the token: \(roles)"
                : "delegated permissions in the token: \(token.scopes.isEmpty ? "none" : token.scopes.joined(separator: ", "))"
            steps.append(Step(name: "incident permissions", passed: false, detail: granted, fix: incidentPermissionFix(delegated: token.user != nil)))
            return steps
        }
        steps.append(Step(name: "incident permissions", passed: true, detail: "SecurityIncident.Read.All granted"))
        let incidentsURL = connection.endpoints.listURL(.incident)
        switch await capture({ () async throws(DefenderAPIError) in try await connection.alerts.with(kind: .incident).probe() }) {
        case .success(let count):
            steps.append(
                Step(
                    name: "incidents API", passed: true, detail: "GET \(incidentsURL)?$top=1 answered 200 (\(count) incident\(count == 1 ? "" : "s"))"
                ))
        case .failure(let error):
            let fix = if case .api(403, _, _, _) = error { incidentPermissionFix(delegated: token.user != nil) } else { fix(for: error) }
            steps.append(Step(name: "incidents API", passed: false, detail: error.description, fix: fix))
        }
        return steps
    }

    /// Where the incident permission is granted.
    static func incidentPermissionFix(delegated: Bool) -> String {
        delegated
            ? "in Entra ID, App registrations > the app > API permissions > Add a permission > Microsoft Graph > Delegated permissions > SecurityIncident.Read.All, grant consent, then sign in again (defender-alertd login)."
            : "in Entra ID, App registrations > the app > API permissions > Add a permission > Microsoft Graph > Application permissions > SecurityIncident.Read.All, then Grant admin consent for the tenant; or remove \"incidents\" from records."
    }

    /// Where the permission is granted, for each API.
    static func permissionFix(_ api: AlertsAPI) -> String {
        switch api {
        case .mde:
            "in Entra ID, App registrations > the app > API permissions > Add a permission > APIs my organization uses > WindowsDefenderATP > Application permissions > Alert.Read.All, then Grant admin consent."
        case .graph:
            "in Entra ID, App registrations > the app > API permissions > Add a permission > Microsoft Graph > Application permissions > SecurityAlert.Read.All, then Grant admin consent for the tenant."
        }
    }

    /// Where the delegated permission is granted (user context), for each API.
    static func delegatedPermissionFix(_ api: AlertsAPI) -> String {
        let permission =
            switch api {
            case .mde: "APIs my organization uses > WindowsDefenderATP > Delegated permissions > Alert.Read"
            case .graph: "Microsoft Graph > Delegated permissions > SecurityAlert.Read.All"
            }
        return
            "in Entra ID, App registrations > the app > API permissions > Add a permission > \(permission), grant consent, then sign in again (defender-alertd login)."
    }

    /// Whether a token's `aud` is one known to belong to another API or cloud than the
    /// tenant's (an audience this check does not know is left to the API to judge).
    static func isOtherAudience(_ audience: String, than endpoints: DefenderEndpoints) -> Bool {
        func normalized(_ text: String) -> String { (text.hasSuffix("/") ? String(text.dropLast()) : text).lowercased() }
        // The resources of every API and cloud, and each API's application ID.
        var known: [String: AlertsAPI] = [:]
        for api in AlertsAPI.allCases {
            known[api.applicationID] = api
            for cloud in Cloud.allCases { known[normalized(DefenderEndpoints(api: api, cloud: cloud).resource)] = api }
        }
        let aud = normalized(audience)
        guard let owner = known[aud] else { return false }
        return owner != endpoints.api || (aud.hasPrefix("https://") && aud != normalized(endpoints.resource))
    }

    static func fix(for error: DefenderAPIError) -> String {
        switch error {
        case .api(401, _, _, _): "the API refused a fresh token: check that tenant_id is the tenant where Defender for Endpoint runs, and the cloud."
        case .api(403, _, _, _):
            "grant Alert.Read.All (application) on WindowsDefenderATP (api = \"mde\") or SecurityAlert.Read.All on Microsoft Graph (api = \"graph\") with admin consent, and check cloud: a token for the wrong cloud's audience is refused."
        case .api(404, _, _, _): "the API host has no alerts endpoint: check api_url, cloud and region."
        case .api: "retry later; if it persists, quote the correlation id to Microsoft support."
        case .rateLimited: "another client is using this app's rate limit; wait or use a separate app registration."
        case .token(let tokenError): tokenError.hint ?? "see the token step."
        case .transport:
            "check network access to the API host: DNS, firewall, proxy_url or HTTPS_PROXY, and ca_file if a TLS-inspecting proxy re-signs traffic."
        case .malformedResponse: "something other than the Defender API answered (a proxy or captive portal?): check proxy_url and api_url."
        case .cancelled: "the check was interrupted; run it again."
        }
    }
}

/// The outcome of an async call with a typed error, as a `Result`.
func capture<T, E: Error>(_ body: () async throws(E) -> T) async -> Result<T, E> {
    do { return .success(try await body()) } catch { return .failure(error) }
}
