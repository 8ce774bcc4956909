import ArgumentParser
import DefenderSimulator
import Foundation
import Logging
import ServiceLifecycle

/// `defender-sim`: a faithful local Entra ID + Microsoft Defender for Endpoint alerts API.
@main
struct DefenderSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "defender-sim",
        abstract: "A local simulator of Entra ID token endpoints and the Defender for Endpoint alerts API, with scenarios and faults.",
        discussion: """
            Listens on loopback only. Endpoints: POST /{tenant}/oauth2/token (v1), POST /{tenant}/oauth2/v2.0/token (v2), \
            POST /{tenant}/oauth2/v2.0/devicecode, GET /{tenant}/v2.0/.well-known/openid-configuration, GET /api/alerts and \
            /api/v1.0/alerts, GET /v1.0/security/alerts_v2, and the control API under /_simulator/ (GET counters, GET|POST alerts, \
            POST alerts/{id}, POST|DELETE faults, POST tokens/revoke, POST scenario, POST apps, POST clock/advance, POST order, \
            POST users, POST users/revoke, POST devicecode/approve|decline|slow-down).

            Faults (--fault, repeatable): TARGET:KIND[:key=value,...] with TARGET token|alerts|any and KIND \
            status|rate-limit|delay|stall|truncated|invalid-json|wrong-content-type|echo|lone-surrogate|invalid-utf8|deep-nesting|wrong-audience; keys: status, retryAfter, retryAfterDate (true: an HTTP date), seconds, \
            count (how many requests; default: until cleared), probability (0...1). Examples: \
            alerts:status:status=503,count=2   token:status:status=503,probability=0.3   alerts:stall:count=1   \
            alerts:rate-limit:retryAfter=5,count=3
            """
    )

    @Option(help: "Loopback address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port; 0 picks a free one (printed on the first line of output).") var port = 8080
    @Flag(help: "Serve HTTPS with a freshly generated CA and server certificate.") var tls = false
    @Option(name: .customLong("ca-out"), help: "With --tls: write the CA certificate (PEM) here, for clients.") var caOut: String?
    @Option(help: "Seed of every random choice (alerts, fault probabilities).") var seed: UInt64 = 1

    @Option(name: .customLong("tenant-id"), help: "The simulated tenant's id.") var tenantID = SimulatorConfiguration.defaultTenant.id
    @Option(name: .customLong("tenant-domain"), help: "A verified domain of the tenant (repeatable).") var tenantDomains: [String] =
        SimulatorConfiguration.defaultTenant.domains
    @Option(name: .customLong("client-id"), help: "Application (client) id of the registered app.") var clientID =
        "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
    @Option(name: .customLong("client-secret"), help: "A client secret of the app (repeatable). Default: demo-client-secret-not-real.")
    var clientSecrets: [String] = []
    @Option(name: .customLong("client-certificate"), help: "A PEM certificate registered on the app (repeatable), for client assertions.")
    var clientCertificates: [String] = []
    @Option(help: "Application roles granted on WindowsDefenderATP (comma-separated; empty for none).") var roles = "Alert.Read.All"
    @Option(name: .customLong("graph-roles"), help: "Application roles granted on Microsoft Graph (comma-separated; empty for none).")
    var graphRoles = "SecurityAlert.Read.All,SecurityIncident.Read.All"
    @Option(name: .customLong("token-lifetime"), help: "expires_in of issued tokens, seconds.") var tokenLifetime = 3599
    @Option(name: .customLong("rate-limit-per-minute"), help: "API calls allowed per minute per app and tenant.") var perMinute = 100
    @Option(name: .customLong("rate-limit-per-hour"), help: "API calls allowed per hour per app and tenant.") var perHour = 1500

    @Option(help: "Alerts present at start.") var backlog = 0
    @Option(name: .customLong("backlog-span"), help: "Seconds before start over which the backlog is spread.") var backlogSpan: Double = 86_400
    @Option(help: "Steady arrivals per minute (new alerts, updates, re-surfacings).") var rate: Double = 0
    @Option(name: .customLong("update-fraction"), help: "Share of arrivals that update an existing alert.") var updateFraction: Double = 0
    @Option(name: .customLong("resurface-fraction"), help: "Share of arrivals that bring an old alert back with a new lastUpdateTime.")
    var resurfaceFraction: Double = 0
    @Option(name: .customLong("late-fraction"), help: "Share of arrivals visible only --late-seconds after their lastUpdateTime.") var lateFraction:
        Double = 0
    @Option(name: .customLong("late-seconds"), help: "Delay of late alerts, seconds.") var lateSeconds: Double = 0
    @Option(name: .customLong("batch-size"), help: "New alerts per arrival sharing one lastUpdateTime.") var batchSize = 1
    @Option(name: .customLong("fault"), help: "A fault to inject (see above; repeatable).") var faults: [String] = []
    @Option(
        name: .customLong("result-order"),
        help:
            "Order of results of both APIs: \(ResultOrder.allCases.map(\.rawValue).joined(separator: "|")) (shuffled: a new order on every request; the API promises none). Default: creation for MDE, newest-first for Graph (as documented)."
    )
    var resultOrder: ResultOrder?
    @Flag(help: "Log every request.") var verbose = false

    private static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func run() async throws {
        var configuration = SimulatorConfiguration()
        configuration.seed = seed
        configuration.tenants = [SimulatedTenant(id: tenantID, domains: tenantDomains)]
        let certificates = try clientCertificates.map { path in
            try RegisteredCertificate(pem: String(contentsOfFile: path, encoding: .utf8))
        }
        configuration.apps = [
            RegisteredApp(
                tenantID: tenantID, clientID: clientID,
                secrets: clientSecrets.isEmpty ? ["demo-client-secret-not-real"] : clientSecrets,
                certificates: certificates, roles: Self.list(roles), graphRoles: Self.list(graphRoles)
            )
        ]
        configuration.tokenLifetime = tokenLifetime
        configuration.rateLimitPerMinute = perMinute
        configuration.rateLimitPerHour = perHour
        var scenario = Scenario()
        scenario.backlog = backlog
        scenario.backlogSpanSeconds = backlogSpan
        scenario.ratePerMinute = rate
        scenario.updateFraction = updateFraction
        scenario.resurfaceFraction = resurfaceFraction
        scenario.lateFraction = lateFraction
        scenario.lateSeconds = lateSeconds
        scenario.batchSize = batchSize
        configuration.scenario = scenario
        configuration.faults = try faults.map(Self.parseFault)
        if let resultOrder { (configuration.resultOrder, configuration.graphResultOrder) = (resultOrder, resultOrder) }

        var logger = Logger(label: "defender-sim")
        logger.logLevel = verbose ? .debug : .warning
        let simulator = try SimulatedDefender(configuration: configuration)
        let tlsMaterial = try tls ? SimulatorTLS.generate() : nil
        if let tlsMaterial, let caOut {
            try tlsMaterial.caCertificatePEM.write(toFile: caOut, atomically: true, encoding: .utf8)
        }
        let scheme = tls ? "https" : "http"
        let host = self.host
        let server = try SimulatorServer(simulator: simulator, host: host, port: port, tls: tlsMaterial, logger: logger) { port in
            // Unbuffered, so a parent process reading the pipe sees the port at once.
            FileHandle.standardOutput.write(Data("listening \(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)\n".utf8))
        }
        var groupConfiguration = ServiceGroupConfiguration(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(5)  // then stalled requests are cut off
        let group = ServiceGroup(configuration: groupConfiguration)
        try await group.run()
    }

    /// `TARGET:KIND[:key=value,...]`.
    static func parseFault(_ text: String) throws -> Fault {
        let parts = text.split(separator: ":", maxSplits: 2).map(String.init)
        guard parts.count >= 2, let target = Fault.Target(rawValue: parts[0]), let kind = Fault.Kind(rawValue: parts[1]) else {
            throw ValidationError(
                "--fault \(text): expected TARGET:KIND[:key=value,...] with TARGET one of \(Fault.Target.allCases.map(\.rawValue).joined(separator: "|")) and KIND one of \(Fault.Kind.allCases.map(\.rawValue).joined(separator: "|"))"
            )
        }
        var fault = Fault(target: target, kind: kind)
        for setting in parts.count > 2 ? parts[2].split(separator: ",") : [] {
            let pair = setting.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else { throw ValidationError("--fault \(text): '\(setting)' is not key=value") }
            switch pair[0] {
            case "status": fault.status = Int(pair[1])
            case "retryAfter": fault.retryAfter = Int(pair[1])
            case "retryAfterDate": fault.retryAfterDate = pair[1] == "true"
            case "seconds": fault.seconds = Double(pair[1])
            case "count": fault.count = Int(pair[1])
            case "probability": fault.probability = Double(pair[1])
            default:
                throw ValidationError("--fault \(text): unknown key '\(pair[0])' (status, retryAfter, retryAfterDate, seconds, count, probability)")
            }
        }
        do { try fault.validate() } catch { throw ValidationError("--fault \(text): \(error)") }
        return fault
    }
}

extension ResultOrder: ExpressibleByArgument {}
