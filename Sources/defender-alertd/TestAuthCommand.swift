import AlertForwarder
import ArgumentParser
import DefenderAPI
import Foundation
import Logging

/// `defender-alertd test-auth`: checks each tenant's credentials, permissions and API access.
struct TestAuthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-auth",
        abstract: "Get a token, show its roles and call the alerts API once, per tenant; exit 0 only when every tenant works."
    )

    @OptionGroup var options: ConfigOption

    @Option(help: "Check only this tenant.") var tenant: String?

    func run() async throws {
        let configuration = try loadConfiguration(options.config)
        try await withUserTokens(configuration) { storage in try await check(configuration, storage) }
    }

    private func check(_ configuration: Configuration, _ userTokens: UserTokenStorage) async throws {
        let tenants = configuration.tenants.filter { tenant == nil || $0.name == tenant }
        guard !tenants.isEmpty else {
            FileHandle.standardError.write(
                Data("no [[tenant]] named \"\(tenant ?? "")\"; configured: \(configuration.tenants.map(\.name).joined(separator: ", "))\n".utf8))
            throw ExitStatus.configuration
        }
        var logger = Logger(label: "test-auth") { _ in SwiftLogNoOpLogHandler() }
        logger.logLevel = .critical
        let transport = try DefenderHTTPClient(settings: configuration.service.httpSettings())
        var failures = 0
        for tenant in tenants {
            print(
                "tenant \(tenant.name) (\(tenant.tenantID), app \(tenant.clientID), \(tenant.cloud.rawValue) cloud, \(tenant.api == .graph ? "Microsoft Graph alerts_v2" : "MDE alerts API")):"
            )
            let steps = await AuthenticationCheck.run(tenant: tenant, transport: transport, userTokens: userTokens, logger: logger)
            for step in steps {
                print("  [\(step.passed ? "ok" : "FAIL")] \(step.name): \(step.detail)")
                if let fix = step.fix { print("         fix: \(fix)") }
            }
            if steps.contains(where: { !$0.passed }) { failures += 1 }
        }
        await transport.shutdown()
        if failures > 0 {
            print("\(failures) of \(tenants.count) tenant\(tenants.count == 1 ? "" : "s") failed")
            throw ExitCode.failure
        }
        print("all \(tenants.count) tenant\(tenants.count == 1 ? "" : "s") OK")
    }
}
