import Crypto
import DefenderAPI
import Foundation

/// Where a signed-in user's refresh token is kept: a file in the state directory
/// (``RefreshTokenStore``), or PostgreSQL for a group (`PostgresUserToken`).
public protocol UserTokenStore: RefreshTokenKeeper {
    /// Where the token is, for messages (`login` prints it).
    var location: String { get }
    /// Deletes the stored token (`logout`); true when there was one.
    func delete() async throws -> Bool
}

/// The form a refresh token is kept in, wherever it is kept: with a key (a systemd
/// credential, which `systemd-creds encrypt` can protect in turn, or a file), sealed with
/// AES-256-GCM under a key derived from it by HKDF-SHA256, bound to the tenant and app;
/// without one, as it is, after a marker.
public struct RefreshTokenSeal: Sendable {
    public let tenant: String
    let clientID: String
    private let key: SymmetricKey?

    public init(tenant: String, clientID: String, key: Secret?) {
        self.tenant = tenant
        self.clientID = clientID.lowercased()
        self.key = key.map { secret in
            secret.withValue { text in
                HKDF<SHA256>.deriveKey(
                    inputKeyMaterial: SymmetricKey(data: Data(text.utf8)), salt: Data("defender-alertd refresh token".utf8),
                    info: Data("v1".utf8), outputByteCount: 32)
            }
        }
    }

    /// Whether a key seals what ``seal(_:)`` makes.
    public var hasKey: Bool { key != nil }

    /// Sealed tokens start with this, plain ones with ``plainMagic``.
    static let sealedMagic = Data("DAT-SEALED-1\n".utf8)
    static let plainMagic = Data("DAT-PLAIN-1\n".utf8)

    /// The tenant and app a sealed token belongs to (authenticated, not secret).
    private var binding: Data { Data("\(tenant)\n\(clientID)".utf8) }

    var signInCommand: String { "defender-alertd login --tenant \(tenant)" }

    /// The token's bytes to keep: sealed with the key, or plain without one.
    func seal(_ token: Secret) throws(RefreshTokenStore.Failure) -> Data {
        guard let key else { return Self.plainMagic + token.withValue { Data($0.utf8) } }
        do {
            let box = try token.withValue { try AES.GCM.seal(Data($0.utf8), using: key, authenticating: binding) }
            guard let combined = box.combined else { throw RefreshTokenStore.Failure("sealing the token gave no output") }
            return Self.sealedMagic + combined
        } catch let error as RefreshTokenStore.Failure {
            throw error
        } catch {
            throw RefreshTokenStore.Failure("the refresh token cannot be sealed: \(error)")
        }
    }

    /// The token in `data` kept at `location`, masked from then on in any text from outside.
    func open(_ data: Data, at location: String) throws(RefreshTokenStore.Failure) -> Secret {
        let token: String
        if data.starts(with: Self.sealedMagic) {
            guard let key else {
                throw RefreshTokenStore.Failure(
                    "\(location) is sealed with a key, and none is configured: set token_key_credential (or token_key_file) as when it was written, or sign in again"
                )
            }
            do {
                let box = try AES.GCM.SealedBox(combined: data.dropFirst(Self.sealedMagic.count))
                token = String(decoding: try AES.GCM.open(box, using: key, authenticating: binding), as: UTF8.self)
            } catch {
                throw RefreshTokenStore.Failure(
                    "\(location) cannot be opened with the configured key (another key, another tenant or app, or damaged): sign in again with `\(signInCommand)`"
                )
            }
        } else if data.starts(with: Self.plainMagic) {
            token = String(decoding: data.dropFirst(Self.plainMagic.count), as: UTF8.self)
        } else {
            throw RefreshTokenStore.Failure("\(location) is not a refresh token of defender-alertd: sign in again with `\(signInCommand)`")
        }
        guard !token.isEmpty else { throw RefreshTokenStore.Failure("\(location) holds an empty token: sign in again with `\(signInCommand)`") }
        let secret = Secret(token)
        SecretRedaction.register(secret)
        return secret
    }
}

/// The refresh token of a user-context tenant (`auth = "delegated"`), at rest in the state
/// directory: `user-tokens/<tenant>.token`, mode 0600 in a 0700 directory, sealed when a
/// token key is configured (``RefreshTokenSeal``); without one it is readable by the daemon's
/// user alone.
///
/// A rotated token replaces the stored one atomically (a new file written, flushed and renamed
/// over the old, then the directory flushed): a crash at any moment leaves the old token or
/// the new one, never none.
public struct RefreshTokenStore: UserTokenStore {
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    private let directory: String
    let seal: RefreshTokenSeal

    /// The store of `tenant` in `stateDirectory`; `key` is the text of the key credential or file.
    public init(stateDirectory: String, tenant: String, clientID: String, key: Secret?) {
        self.init(directory: stateDirectory, seal: RefreshTokenSeal(tenant: tenant, clientID: clientID, key: key))
    }

    init(directory stateDirectory: String, seal: RefreshTokenSeal) {
        self.directory = (stateDirectory as NSString).appendingPathComponent("user-tokens")
        self.seal = seal
    }

    /// `user-tokens/<tenant>.token`.
    public var path: String { (directory as NSString).appendingPathComponent("\(seal.tenant).token") }
    public var location: String { path }
    public var signInCommand: String { seal.signInCommand }

    /// The stored token, masked from then on in any text from outside; nil when none is stored.
    public func load() throws(Failure) -> Secret? {
        guard let data = FileManager.default.contents(atPath: path) else {
            if FileManager.default.fileExists(atPath: path) { throw Failure("\(path) cannot be read") }
            return nil
        }
        return try seal.open(data, at: path)
    }

    /// Stores `token` in place of the one stored, atomically and durably.
    public func save(_ token: Secret) throws(Failure) {
        let contents = try seal.seal(token)
        try makeDirectory()
        let temporary = path + ".new"
        unlink(temporary)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw Failure("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let written = contents.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let flushed = fsync(descriptor) == 0
        close(descriptor)
        guard written == contents.count, flushed else {
            unlink(temporary)
            throw Failure("cannot write \(temporary): \(String(cString: strerror(errno))); the token stored before is kept")
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw Failure("cannot replace \(path): \(String(cString: strerror(errno))); the token stored before is kept")
        }
        syncDirectory()
    }

    /// Deletes the stored token (`logout`); true when there was one.
    @discardableResult
    public func delete() throws(Failure) -> Bool {
        guard unlink(path) == 0 else {
            if errno == ENOENT { return false }
            throw Failure("cannot delete \(path): \(String(cString: strerror(errno)))")
        }
        syncDirectory()
        return true
    }

    private func makeDirectory() throws(Failure) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw Failure("cannot create \(directory): \(error.localizedDescription)")
        }
    }

    private func syncDirectory() {
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        _ = fsync(descriptor)
        close(descriptor)
    }
}
