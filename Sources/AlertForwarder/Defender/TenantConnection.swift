import DefenderAPI
import Foundation
import Logging
import Timekeeping

/// The token provider and alerts client of one tenant, built from its configuration.
public struct TenantConnection: Sendable {
    public let endpoints: DefenderEndpoints
    public let tokens: TokenProvider
    public let alerts: AlertsClient

    /// Builds the clients; fails only when the certificate credential cannot be loaded.
    public init(tenant: TenantConfiguration, transport: any HTTPTransport, clock: MonotonicClock = .continuous,
                logger: Logger) throws(CredentialError) {
        var logger = logger
        logger[metadataKey: "tenant"] = "\(tenant.name)"
        endpoints = DefenderEndpoints(cloud: tenant.cloud, region: tenant.region, apiURL: tenant.apiURL, loginURL: tenant.loginURL)
        let credential: ClientCredential = switch tenant.credential {
        case .clientSecret(let secret, _): .secret(secret)
        case .certificate(_, let pem, let key, _):
            .certificate(try CertificateCredential(certificatePEM: pem, privateKeyPEM: key, algorithm: tenant.certificateAlgorithm))
        }
        tokens = TokenProvider(
            configuration: .init(tenantID: tenant.tenantID, clientID: tenant.clientID, credential: credential,
                                 endpoints: endpoints, version: tenant.tokenVersion),
            transport: transport, clock: clock, logger: logger)
        var settings = AlertsClient.Settings(pageSize: tenant.pageSize, expandEvidence: tenant.expandEvidence,
                                             severities: tenant.severities, statuses: tenant.statuses)
        settings.attempts = 3
        alerts = AlertsClient(
            endpoints: endpoints, settings: settings, tokens: tokens, transport: transport,
            budget: RateBudget(perMinute: tenant.rateLimitPerMinute, perHour: tenant.rateLimitPerHour, clock: clock),
            clock: clock, logger: logger)
    }
}

extension ServiceSettings {
    /// Settings of the shared HTTP client: CA file, and the proxy from `proxy_url` or the environment.
    public func httpSettings(environment: [String: String] = ProcessInfo.processInfo.environment) -> DefenderHTTPClient.Settings {
        DefenderHTTPClient.Settings(caFile: caFile, proxy: ProxySettings.resolve(proxyURL: proxyURL, environment: environment))
    }
}
