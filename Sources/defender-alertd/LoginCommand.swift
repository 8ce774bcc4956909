import AlertForwarder
import ArgumentParser
import DefenderAPI
import Foundation
import Logging
import OrderedJSON

/// `defender-alertd login --tenant NAME`: a person signs in for a tenant with
/// `auth = "delegated"` (device code flow); the refresh token is stored for the daemon.
struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Sign a person in for a tenant with auth = \"delegated\" (device code flow) and store the refresh token for the daemon."
    )

    @OptionGroup var options: ConfigOption

    @Option(help: "The [[tenant]] to sign in for.") var tenant: String

    func run() async throws {
        let configuration = try loginConfiguration(options.config)
        try await withUserTokens(configuration) { storage in try await signIn(configuration, storage) }
    }

    private func signIn(_ configuration: Configuration, _ storage: UserTokenStorage) async throws {
        let signIn = try userSignIn(tenant, configuration, storage)
        var logger = Logger(label: "login") { _ in SwiftLogNoOpLogHandler() }
        logger.logLevel = .critical
        let transport = try DefenderHTTPClient(settings: configuration.service.httpSettings())
        let outcome: UserSignIn.Outcome
        do {
            outcome = try await signIn.signIn(transport: transport, logger: logger) { prompt in
                // Written at once (a person or a script waits for the code). Entra ID's text is
                // printed as printable text, bounded, with a warning before a page that is not
                // Microsoft's (DeviceCodeLogin.Prompt.instructions).
                FileHandle.standardOutput.write(
                    Data(
                        "\(prompt.instructions)Waiting for the sign-in (the code expires in \(prompt.expiresIn.components.seconds / 60) minutes; Ctrl-C gives up)...\n"
                            .utf8))
            }
        } catch {
            await transport.shutdown()
            // The error may quote Entra ID's (or a proxy's) answer.
            FileHandle.standardError.write(Data("\(PrintableText.shown("\(error)", limit: 4_000))\n".utf8))
            throw ExitCode.failure
        }
        await transport.shutdown()
        FileHandle.standardOutput.write(Data(outcome.summary.utf8))
    }
}

/// `defender-alertd logout --tenant NAME`: deletes the stored refresh token.
struct LogoutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logout",
        abstract: "Delete the refresh token stored for a tenant with auth = \"delegated\"; the daemon stops reading its alerts until the next login."
    )

    @OptionGroup var options: ConfigOption

    @Option(help: "The [[tenant]] to sign out.") var tenant: String

    func run() async throws {
        let configuration = try loginConfiguration(options.config)
        try await withUserTokens(configuration) { [tenant] storage in try await Self.signOut(tenant, configuration, storage) }
    }

    private static func signOut(_ tenant: String, _ configuration: Configuration, _ storage: UserTokenStorage) async throws {
        let signIn = try userSignIn(tenant, configuration, storage)
        do {
            let (deleted, path) = try await signIn.signOut()
            print(deleted ? "The refresh token of \(tenant) is deleted (\(path))." : "No refresh token is stored for \(tenant).")
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// The configuration of `login` and `logout`: the token key may be a credential that exists
/// only inside the service.
private func loginConfiguration(_ path: String) throws -> Configuration {
    try loadConfiguration(path, tokenKeyOptionalOutsideService: true)
}

/// The sign-in of the tenant named `name`, which must use `auth = "delegated"`.
private func userSignIn(_ name: String, _ configuration: Configuration, _ storage: UserTokenStorage) throws -> UserSignIn {
    guard let tenant = configuration.tenants.first(where: { $0.name == name }) else {
        FileHandle.standardError.write(
            Data("no [[tenant]] named \"\(name)\"; configured: \(configuration.tenants.map(\.name).joined(separator: ", "))\n".utf8))
        throw ExitStatus.configuration
    }
    do {
        return try UserSignIn(tenant: tenant, service: configuration.service, storage: storage)
    } catch {
        FileHandle.standardError.write(Data("\(error)\n".utf8))
        throw ExitStatus.configuration
    }
}
