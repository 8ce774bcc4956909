import AlertForwarder
import ArgumentParser
import DefenderAPI
import Foundation
import Logging

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
        let configuration = try loadConfiguration(options.config, tokenKeyOptionalOutsideService: true)
        let tenant = try delegatedTenant(self.tenant, in: configuration)
        var logger = Logger(label: "login") { _ in SwiftLogNoOpLogHandler() }
        logger.logLevel = .critical
        let transport = try DefenderHTTPClient(settings: configuration.service.httpSettings())
        let login = DeviceCodeLogin(endpoints: tenant.endpoints, tenantID: tenant.tenantID, clientID: tenant.clientID, transport: transport, logger: logger)
        let outcome = await capture { () async throws(TokenError) in
            try await login.run { prompt in
                // Written at once (a person or a script waits for the code).
                FileHandle.standardOutput.write(Data("\(prompt.message)\nWaiting for the sign-in (the code expires in \(prompt.expiresIn.components.seconds / 60) minutes; Ctrl-C gives up)...\n".utf8))
            }
        }
        await transport.shutdown()
        let tokens: DeviceCodeLogin.Tokens
        switch outcome {
        case .success(let value): tokens = value
        case .failure(let error):
            FileHandle.standardError.write(Data("sign-in failed: \(error)\n".utf8))
            throw ExitCode.failure
        }
        let store = configuration.service.userTokens.store(for: tenant)
        do {
            try store.save(tokens.refreshToken)
            try handOver(store.path, to: configuration.service.stateDirectory)
        } catch {
            FileHandle.standardError.write(Data("signed in, but the refresh token cannot be stored: \(error)\n".utf8))
            throw ExitCode.failure
        }
        let sealed = configuration.service.tokenKey != nil ? "sealed with the token key"
            : configuration.service.tokenKeyOutsideService
            ? "not sealed yet, readable by the daemon's user alone: the token key is a credential of the service, and the daemon seals the token at its first renewal"
            : "not sealed: readable by the daemon's user alone; set token_key_credential to seal it"
        print("Signed in as \(tokens.user ?? "an unnamed user") with \(tokens.scopes.joined(separator: " ")).")
        print("The refresh token is stored in \(store.path) (\(sealed)); the daemon uses it from its next token renewal, no restart needed.")
    }
}

/// `defender-alertd logout --tenant NAME`: deletes the stored refresh token.
struct LogoutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logout",
        abstract: "Delete the refresh token stored for a tenant with auth = \"delegated\"; the daemon stops reading its alerts until the next login."
    )

    @OptionGroup var options: ConfigOption

    @Option(help: "The [[tenant]] to sign out.") var tenant: String

    func run() throws {
        let configuration = try loadConfiguration(options.config, tokenKeyOptionalOutsideService: true)
        let tenant = try delegatedTenant(self.tenant, in: configuration)
        let store = configuration.service.userTokens.store(for: tenant)
        do {
            print(try store.delete() ? "The refresh token of \(tenant.name) is deleted (\(store.path))." : "No refresh token is stored for \(tenant.name).")
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// The tenant named `name`, which must use `auth = "delegated"`.
private func delegatedTenant(_ name: String, in configuration: Configuration) throws -> TenantConfiguration {
    guard let tenant = configuration.tenants.first(where: { $0.name == name }) else {
        FileHandle.standardError.write(Data("no [[tenant]] named \"\(name)\"; configured: \(configuration.tenants.map(\.name).joined(separator: ", "))\n".utf8))
        throw ExitStatus.configuration
    }
    guard case .signedInUser = tenant.credential else {
        FileHandle.standardError.write(Data("tenant \(name) uses the app's own permissions (auth = \"application\"); login is for auth = \"delegated\"\n".utf8))
        throw ExitStatus.configuration
    }
    return tenant
}

/// Run as root (as an administrator does), the token file and its directory go to the owner of
/// the state directory: the daemon's (dynamic) user, who alone may read them.
private func handOver(_ path: String, to stateDirectory: String) throws {
    guard geteuid() == 0 else { return }
    var info = stat()
    guard stat(stateDirectory, &info) == 0, info.st_uid != 0 else { return }
    for file in [(path as NSString).deletingLastPathComponent, path] where chown(file, info.st_uid, info.st_gid) != 0 {
        throw RefreshTokenStore.Failure("cannot hand \(file) to the state directory's owner (uid \(info.st_uid)): \(String(cString: strerror(errno)))")
    }
}

/// The outcome of an async call with a typed error, as a `Result`.
private func capture<T, E: Error>(_ body: () async throws(E) -> T) async -> Result<T, E> {
    do { return .success(try await body()) } catch { return .failure(error) }
}
