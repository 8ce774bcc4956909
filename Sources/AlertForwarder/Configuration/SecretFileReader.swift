import DefenderAPI
import Foundation

/// Reads secret files (client secrets, private keys) only when their permissions are safe.
///
/// A secret file must be a regular file with no group or other permission bits, owned by root
/// or by the user the daemon runs as. Anything else is refused with the exact command that
/// fixes it, because a secret readable by others is already a leak.
struct SecretFileReader {
    /// The user the daemon runs as.
    var effectiveUserID: uid_t = geteuid()

    /// Problems reading a secret file; each message says how to fix it.
    enum Failure: Error, Equatable {
        case missing(String)
        case notRegularFile(String)
        case tooOpen(String, mode: mode_t)
        case wrongOwner(String, owner: uid_t)
        case unreadable(String, String)
        case empty(String)

        var message: String {
            switch self {
            case .missing(let path):
                "secret file \(path) does not exist"
            case .notRegularFile(let path):
                "secret file \(path) is not a regular file"
            case .tooOpen(let path, let mode):
                "secret file \(path) has mode \(String(mode & 0o777, radix: 8)), readable or writable by group or others; fix: chmod 600 \(path)"
            case .wrongOwner(let path, let owner):
                "secret file \(path) is owned by uid \(owner), neither root nor the daemon's user; fix: chown root \(path)"
            case .unreadable(let path, let reason):
                "secret file \(path) cannot be read: \(reason)"
            case .empty(let path):
                "secret file \(path) is empty"
            }
        }
    }

    /// The file's content with surrounding whitespace (a trailing newline) removed; masked from
    /// then on in any text that came from outside (``SecretRedaction``).
    func read(_ path: String) throws(Failure) -> Secret {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT { throw .missing(path) }
            throw .unreadable(path, String(cString: strerror(errno)))
        }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .notRegularFile(path) }
        guard info.st_mode & 0o077 == 0 else { throw .tooOpen(path, mode: info.st_mode) }
        guard info.st_uid == 0 || info.st_uid == effectiveUserID else { throw .wrongOwner(path, owner: info.st_uid) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .unreadable(path, "permission denied")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw .unreadable(path, "not UTF-8 text") }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw .empty(path) }
        let secret = Secret(trimmed)
        SecretRedaction.register(secret)
        return secret
    }
}
