import Crypto
import DefenderAPI
import Foundation

/// The refresh token of a user-context tenant (`auth = "delegated"`), at rest in the state
/// directory: `user-tokens/<tenant>.token`, mode 0600 in a 0700 directory. With a key (a
/// systemd credential, which `systemd-creds encrypt` can protect in turn, or a file) it is
/// sealed with AES-256-GCM under a key derived from it by HKDF-SHA256, bound to the tenant and
/// app; without one it is kept as it is, readable by the daemon's user alone.
///
/// A rotated token replaces the stored one atomically (a new file written, flushed and renamed
/// over the old, then the directory flushed): a crash at any moment leaves the old token or
/// the new one, never none.
public struct RefreshTokenStore: Sendable {
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    private let directory: String
    private let tenant: String
    private let clientID: String
    private let key: SymmetricKey?

    /// The store of `tenant` in `stateDirectory`; `key` is the text of the key credential or file.
    public init(stateDirectory: String, tenant: String, clientID: String, key: Secret?) {
        self.directory = (stateDirectory as NSString).appendingPathComponent("user-tokens")
        self.tenant = tenant
        self.clientID = clientID.lowercased()
        self.key = key.map { secret in
            secret.withValue { text in
                HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: Data(text.utf8)), salt: Data("defender-alertd refresh token".utf8),
                                       info: Data("v1".utf8), outputByteCount: 32)
            }
        }
    }

    /// `user-tokens/<tenant>.token`.
    public var path: String { (directory as NSString).appendingPathComponent("\(tenant).token") }

    /// Sealed files start with this, plain ones with ``plainMagic``.
    static let sealedMagic = Data("DAT-SEALED-1\n".utf8)
    static let plainMagic = Data("DAT-PLAIN-1\n".utf8)

    /// The tenant and app a sealed token belongs to (authenticated, not secret).
    private var binding: Data { Data("\(tenant)\n\(clientID)".utf8) }

    /// The stored token, masked from then on in any text from outside; nil when none is stored.
    public func load() throws(Failure) -> Secret? {
        guard let data = FileManager.default.contents(atPath: path) else {
            if FileManager.default.fileExists(atPath: path) { throw Failure("\(path) cannot be read") }
            return nil
        }
        let token: String
        if data.starts(with: Self.sealedMagic) {
            guard let key else {
                throw Failure("\(path) is sealed with a key, and none is configured: set token_key_credential (or token_key_file) as when it was written, or sign in again")
            }
            do {
                let box = try AES.GCM.SealedBox(combined: data.dropFirst(Self.sealedMagic.count))
                token = String(decoding: try AES.GCM.open(box, using: key, authenticating: binding), as: UTF8.self)
            } catch {
                throw Failure("\(path) cannot be opened with the configured key (another key, another tenant or app, or a damaged file): sign in again with `defender-alertd login --tenant \(tenant)`")
            }
        } else if data.starts(with: Self.plainMagic) {
            token = String(decoding: data.dropFirst(Self.plainMagic.count), as: UTF8.self)
        } else {
            throw Failure("\(path) is not a refresh token file of defender-alertd: sign in again with `defender-alertd login --tenant \(tenant)`")
        }
        guard !token.isEmpty else { throw Failure("\(path) holds an empty token: sign in again with `defender-alertd login --tenant \(tenant)`") }
        let secret = Secret(token)
        SecretRedaction.register(secret)
        return secret
    }

    /// Stores `token` in place of the one stored, atomically and durably.
    public func save(_ token: Secret) throws(Failure) {
        let contents: Data
        if let key {
            do {
                let box = try token.withValue { try AES.GCM.seal(Data($0.utf8), using: key, authenticating: binding) }
                guard let combined = box.combined else { throw Failure("sealing the token gave no output") }
                contents = Self.sealedMagic + combined
            } catch let error as Failure {
                throw error
            } catch {
                throw Failure("the refresh token cannot be sealed: \(error)")
            }
        } else {
            contents = Self.plainMagic + token.withValue { Data($0.utf8) }
        }
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

extension RefreshTokenStore: RefreshTokenKeeper {
    public var signInCommand: String { "defender-alertd login --tenant \(tenant)" }
}
