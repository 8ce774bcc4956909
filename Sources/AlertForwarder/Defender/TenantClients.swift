import DefenderAPI
import Foundation
import Logging
import Synchronization
import Telemetry
import Timekeeping

/// The token provider and alerts client of one tenant, built from its configuration.
public struct TenantClients: Sendable {
    public let endpoints: DefenderEndpoints
    public let tokens: TokenProvider
    /// The API calls of the tenant's app.
    public let budget: RateBudget
    public let alerts: AlertsClient
    /// The logger the clients log with (the tenant's name as metadata), for the tenant's
    /// pollers to share.
    public let logger: Logger

    /// Builds the clients, with a new token cache and rate budget unless given ones to share;
    /// fails only when the certificate credential cannot be loaded.
    public init(
        tenant: TenantConfiguration, transport: any HTTPTransport, clock: MonotonicClock = .continuous,
        tokens: TokenProvider? = nil, budget: RateBudget? = nil, userTokens: UserTokenStorage? = nil, metrics: TenantMetrics = .unobserved,
        logger: Logger
    ) throws(CredentialError) {
        let logger = logger.with("tenant", tenant.name)
        self.logger = logger
        endpoints = tenant.endpoints
        if let tokens {
            self.tokens = tokens
        } else {
            self.tokens = try Self.tokenProvider(
                for: tenant, transport: transport, clock: clock, userTokens: userTokens, metrics: metrics, logger: logger)
        }
        self.budget = budget ?? RateBudget(perMinute: tenant.rateLimitPerMinute, perHour: tenant.rateLimitPerHour, clock: clock)
        var settings = AlertsClient.Settings(
            pageSize: tenant.pageSize, expandEvidence: tenant.expandEvidence,
            severities: tenant.severities, statuses: tenant.statuses, serviceSources: tenant.serviceSources)
        settings.attempts = 3
        alerts = AlertsClient(
            endpoints: endpoints, settings: settings, tokens: self.tokens, transport: transport,
            budget: self.budget, clock: clock, metrics: metrics, logger: logger)
    }

    static func tokenProvider(
        for tenant: TenantConfiguration, transport: any HTTPTransport, clock: MonotonicClock,
        userTokens: UserTokenStorage?, metrics: TenantMetrics, logger: Logger
    ) throws(CredentialError) -> TokenProvider {
        let credential: ClientCredential
        switch tenant.credential {
        case .clientSecret(let secret, _): credential = .secret(secret)
        case .certificate(_, let pem, let key, _):
            credential = .certificate(try CertificateCredential(certificatePEM: pem, privateKeyPEM: key, algorithm: tenant.certificateAlgorithm))
        case .signedInUser:
            guard let userTokens else {
                throw CredentialError("auth = \"delegated\" keeps the signed-in user's token in the state directory, which is not open here")
            }
            credential = .refreshToken(userTokens.store(for: tenant))
        }
        return TokenProvider(
            configuration: .init(
                tenantID: tenant.tenantID, clientID: tenant.clientID, credential: credential,
                endpoints: tenant.endpoints, version: tenant.tokenVersion),
            transport: transport, clock: clock, metrics: metrics, logger: logger)
    }
}

/// Where the signed-in users' refresh tokens are kept (`auth = "delegated"`): the state
/// directory, sealed with the token key when one is configured; or, for a group, PostgreSQL,
/// always sealed.
public struct UserTokenStorage: Sendable {
    public var stateDirectory: String
    public var key: Secret?
    /// The group's database (`state_database`), when the state is there.
    public var database: StateDatabase?

    public init(stateDirectory: String, key: Secret?, database: StateDatabase? = nil) {
        self.stateDirectory = stateDirectory
        self.key = key
        self.database = database
    }

    public func store(for tenant: TenantConfiguration) -> any UserTokenStore {
        let seal = RefreshTokenSeal(tenant: tenant.name, clientID: tenant.clientID, key: key)
        if let database { return PostgresUserToken(database: database, seal: seal) }
        return RefreshTokenStore(stateDirectory: stateDirectory, tenant: tenant.name, clientID: tenant.clientID, key: key)
    }
}

extension ServiceSettings {
    /// Where this configuration keeps the signed-in users' refresh tokens: `database` is the
    /// running client of `state_database`, when it is set.
    public func userTokens(in database: StateDatabase? = nil) -> UserTokenStorage {
        UserTokenStorage(stateDirectory: stateDirectory, key: tokenKey, database: database)
    }
}

extension ServiceSettings {
    /// Settings of the shared HTTP client: CA file, and the proxy from `proxy_url` (with the
    /// password from its file or credential) or the environment.
    public func httpSettings(environment: [String: String] = ProcessInfo.processInfo.environment) -> DefenderHTTPClient.Settings {
        var proxy = ProxySettings.resolve(proxyURL: proxyURL, environment: environment)
        if proxyURL != nil, let proxyPassword { proxy.server?.password = proxyPassword }
        return DefenderHTTPClient.Settings(caFile: caFile, proxy: proxy)
    }
}

extension TenantConfiguration {
    /// Where this tenant's tokens and alerts come from.
    public var endpoints: DefenderEndpoints {
        DefenderEndpoints(api: api, cloud: cloud, region: region, apiURL: apiURL, loginURL: loginURL)
    }
}

/// The token caches and rate budgets of the running daemon, kept from one configuration to the
/// next. Entra ID issues a token to an app in a tenant, and the API limits the calls of an app
/// in a tenant; neither knows about a reload. So a reload that leaves a tenant's app,
/// credential and endpoints as they were keeps its cached token, and one that leaves its app
/// and API keeps its budget (the calls counted and any `Retry-After` in force; new limits
/// apply to it). Two `[[tenant]]` entries for the same app and tenant share both.
public final class TenantClientCache: Sendable {
    /// What a token depends on.
    private struct TokenIdentity: Hashable {
        var tenantID, clientID: String
        var credential: TenantCredential
        var endpoints: DefenderEndpoints
        var version: TokenEndpointVersion
        var algorithm: CertificateCredential.Algorithm

        init(_ tenant: TenantConfiguration) {
            (tenantID, clientID, credential) = (tenant.tenantID, tenant.clientID, tenant.credential)
            (endpoints, version, algorithm) = (tenant.endpoints, tenant.tokenVersion, tenant.certificateAlgorithm)
        }

        /// Hashed by app; the credential is compared, never hashed.
        func hash(into hasher: inout Hasher) {
            hasher.combine(tenantID)
            hasher.combine(clientID)
        }
    }

    /// Whose calls an API counts together (MDE and Graph each count their own).
    private struct BudgetIdentity: Hashable {
        var tenantID, clientID, apiBase: String
        var api: AlertsAPI

        init(_ tenant: TenantConfiguration) {
            (tenantID, clientID, apiBase, api) = (tenant.tenantID, tenant.clientID, tenant.endpoints.apiBase, tenant.api)
        }
    }

    /// A daemon of 10,000 tenants finds each tenant's in one lookup.
    private struct SharedClients {
        var tokens: [TokenIdentity: TokenProvider] = [:]
        var budgets: [BudgetIdentity: RateBudget] = [:]
    }

    private let shared = Mutex(SharedClients())
    private let transport: any HTTPTransport
    private let clock: MonotonicClock
    private let telemetry: Telemetry
    private let userTokens: UserTokenStorage?
    /// In a group: the tenants this daemon holds; each tenant's alerts requests are sent only
    /// while it holds that tenant (``LeaseGatedTransport``).
    private let leases: TenantLeases?
    private let logger: Logger

    public init(
        transport: any HTTPTransport, clock: MonotonicClock = .continuous, telemetry: Telemetry = Telemetry(),
        userTokens: UserTokenStorage? = nil, leases: TenantLeases? = nil, logger: Logger
    ) {
        self.userTokens = userTokens
        self.leases = leases
        self.transport = transport
        self.clock = clock
        self.telemetry = telemetry
        self.logger = logger
    }

    /// The clients of a configuration's tenants, sharing what earlier ones built; what no
    /// tenant of it uses any more is forgotten. A tenant whose credential cannot be loaded gets
    /// the error instead.
    public func clients(for tenants: [TenantConfiguration]) async -> [Result<TenantClients, CredentialError>] {
        let previous = shared.withLock { $0 }
        var current = SharedClients()
        var connections: [Result<TenantClients, CredentialError>] = []
        for tenant in tenants {
            let tokenIdentity = TokenIdentity(tenant)
            let budgetIdentity = BudgetIdentity(tenant)
            let tenantLogger = logger.with("tenant", tenant.name)
            // A token cache shared by two entries counts its requests under the first one's name.
            let metrics = TenantMetrics(telemetry: telemetry, tenant: tenant.name, api: tenant.api.rawValue)
            do throws(CredentialError) {
                var tokens: TokenProvider! = current.tokens[tokenIdentity] ?? previous.tokens[tokenIdentity]
                if tokens == nil {
                    tokens = try TenantClients.tokenProvider(
                        for: tenant, transport: transport, clock: clock, userTokens: userTokens, metrics: metrics, logger: tenantLogger)
                }
                current.tokens[tokenIdentity] = tokens
                let budget: RateBudget
                if let shared = current.budgets[budgetIdentity] {
                    // Two entries for one app and tenant: the lower limits hold for both.
                    budget = shared
                    await budget.setLimits(
                        perMinute: min(tenant.rateLimitPerMinute, await budget.perMinute),
                        perHour: min(tenant.rateLimitPerHour, await budget.perHour))
                } else {
                    budget =
                        previous.budgets[budgetIdentity]
                        ?? RateBudget(perMinute: tenant.rateLimitPerMinute, perHour: tenant.rateLimitPerHour, clock: clock)
                    await budget.setLimits(perMinute: tenant.rateLimitPerMinute, perHour: tenant.rateLimitPerHour)
                    current.budgets[budgetIdentity] = budget
                }
                let alertsTransport: any HTTPTransport =
                    leases.map { LeaseGatedTransport(inner: transport, tenant: tenant.name, leases: $0) } ?? transport
                connections.append(
                    .success(
                        try TenantClients(
                            tenant: tenant, transport: alertsTransport, clock: clock, tokens: tokens,
                            budget: budget, metrics: metrics, logger: tenantLogger)))
            } catch {
                connections.append(.failure(error))
            }
        }
        shared.withLock { $0 = current }
        return connections
    }
}

/// The API clients report to the tenant's metrics.
extension TenantMetrics: APIObserver {}
