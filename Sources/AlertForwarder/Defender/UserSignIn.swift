import DefenderAPI
import Foundation
import Logging
import OrderedJSON

/// `login` and `logout` of a tenant with `auth = "delegated"`: a person signs in (device code
/// flow) and the refresh token is stored where the daemon takes it from, or deleted.
public struct UserSignIn: Sendable {
    /// Why a sign-in or sign-out did not happen; each says what to do.
    public enum Failure: Error, Sendable, CustomStringConvertible {
        /// The tenant uses the app's own permissions.
        case notDelegated(String)
        case signIn(TokenError)
        case storage(any Error)

        public var description: String {
            switch self {
            case .notDelegated(let tenant):
                "tenant \(tenant) uses the app's own permissions (auth = \"application\"); login is for auth = \"delegated\""
            case .signIn(let error): "sign-in failed: \(error)"
            case .storage(let error): "signed in, but the refresh token cannot be stored: \(error)"
            }
        }
    }

    /// How the stored token is protected.
    public enum Sealing: Sendable, Equatable, CustomStringConvertible {
        case sealed
        /// The token key is a credential of the service: the daemon seals the token at its
        /// first renewal.
        case atFirstRenewal
        case notSealed

        public var description: String {
            switch self {
            case .sealed: "sealed with the token key"
            case .atFirstRenewal:
                "not sealed yet, readable by the daemon's user alone: the token key is a credential of the service, and the daemon seals the token at its first renewal"
            case .notSealed: "not sealed: readable by the daemon's user alone; set token_key_credential to seal it"
            }
        }
    }

    /// A completed sign-in.
    public struct Outcome: Sendable {
        /// The user's name and the scopes granted, as Entra ID's answer gave them: print
        /// ``summary``, never these.
        public var user: String?
        public var scopes: [String]
        public var path: String
        public var sealing: Sealing

        /// What `login` prints: who signed in with which permissions, where the token is. The
        /// user name and scopes come from Entra ID's answer and are escaped (``PrintableText``):
        /// a name holding a line break cannot add a line of its own.
        public var summary: String {
            let name = user.map { PrintableText.shown($0, limit: 256) } ?? "an unnamed user"
            let granted = PrintableText.shown(scopes.joined(separator: " "), limit: 1_000)
            return "Signed in as \(name) with \(granted).\n"
                + "The refresh token is stored in \(path) (\(sealing)); the daemon uses it from its next token renewal, no restart needed.\n"
        }
    }

    public let tenant: TenantConfiguration
    private let service: ServiceSettings
    private let storage: UserTokenStorage
    private var store: any UserTokenStore { storage.store(for: tenant) }

    /// `storage`: where the token goes (``ServiceSettings/userTokens(in:)``).
    public init(tenant: TenantConfiguration, service: ServiceSettings, storage: UserTokenStorage) throws(Failure) {
        guard case .signedInUser = tenant.credential else { throw .notDelegated(tenant.name) }
        self.tenant = tenant
        self.service = service
        self.storage = storage
    }

    /// Signs the person in (`show` hears Entra ID's instructions) and stores the refresh token,
    /// handed to the state directory's owner when run as root.
    public func signIn(
        transport: any HTTPTransport, logger: Logger,
        show: @Sendable (DeviceCodeLogin.Prompt) async -> Void
    ) async throws(Failure) -> Outcome {
        let login = DeviceCodeLogin(
            endpoints: tenant.endpoints, tenantID: tenant.tenantID, clientID: tenant.clientID, transport: transport, logger: logger)
        let tokens: DeviceCodeLogin.Tokens
        do { tokens = try await login.run(show: show) } catch { throw .signIn(error) }
        let store = self.store
        do {
            try await store.save(tokens.refreshToken)
            if let file = store as? RefreshTokenStore { try Self.handOver(file.path, to: service.stateDirectory) }
        } catch {
            throw .storage(error)
        }
        let sealing: Sealing = service.tokenKey != nil ? .sealed : service.tokenKeyOutsideService ? .atFirstRenewal : .notSealed
        return Outcome(user: tokens.user, scopes: tokens.scopes, path: store.location, sealing: sealing)
    }

    /// Deletes the stored token; true when there was one.
    public func signOut() async throws(Failure) -> (deleted: Bool, path: String) {
        let store = self.store
        do { return (try await store.delete(), store.location) } catch { throw .storage(error) }
    }

    /// Run as root (as an administrator does), the token file and its directory go to the owner
    /// of the state directory: the daemon's (dynamic) user, who alone may read them.
    static func handOver(_ path: String, to stateDirectory: String) throws(RefreshTokenStore.Failure) {
        guard geteuid() == 0 else { return }
        var info = stat()
        guard stat(stateDirectory, &info) == 0, info.st_uid != 0 else { return }
        for file in [(path as NSString).deletingLastPathComponent, path] where chown(file, info.st_uid, info.st_gid) != 0 {
            throw RefreshTokenStore.Failure(
                "cannot hand \(file) to the state directory's owner (uid \(info.st_uid)): \(String(cString: strerror(errno)))")
        }
    }
}
