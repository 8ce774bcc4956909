import DefenderAPI
import Foundation

/// Reads secret files (client secrets, private keys) only when their permissions are safe.
///
/// A secret file must be a regular file with no group or other permission bits, owned by root
/// or by the user the daemon runs as. Anything else is refused with the exact command that
/// fixes it, because a secret readable by others is already a leak.
///
/// One exception, the file of a Kubernetes Secret volume as the kubelet writes it for a pod
/// with an `fsGroup` (`defaultMode: 0400` becomes `0440`, group the `fsGroup`): readable by
/// its group too, when that group is one of the daemon's (the pod's `fsGroup` is, and only the
/// pod's processes have it). Recognized by the kubelet's layout (`DIR/KEY` through the
/// `DIR/..data` link); anything else group-readable is refused as before.
struct SecretFileReader {
    /// The user the daemon runs as.
    var effectiveUserID: uid_t = geteuid()
    /// The groups the daemon runs with: its own and the supplementary ones (a pod's `fsGroup`).
    var groupIDs: Set<gid_t> = Self.processGroups()

    /// Problems reading a secret file; each message says how to fix it.
    enum Failure: Error, Equatable {
        case missing(String)
        case notRegularFile(String)
        case tooOpen(String, mode: mode_t)
        case wrongOwner(String, owner: uid_t)
        case unreadable(String, String)
        case empty(String)
        /// In a Kubernetes Secret volume: readable by others, or by a group the daemon is not in.
        case kubernetesTooOpen(String, mode: mode_t)
        case kubernetesOtherGroup(String, group: gid_t)
        /// In a Kubernetes Secret volume, and the daemon may not read it (no `fsGroup`).
        case kubernetesUnreadable(String)

        static let kubernetesFix =
            "set defaultMode: 0400 on the Secret volume and the pod's securityContext.fsGroup to the daemon's group (65532 in the image)"

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
            case .kubernetesTooOpen(let path, let mode):
                "secret file \(path) (a Kubernetes Secret volume) has mode \(String(mode & 0o777, radix: 8)), readable or writable by others or writable by its group; fix: \(Self.kubernetesFix)"
            case .kubernetesOtherGroup(let path, let group):
                "secret file \(path) (a Kubernetes Secret volume) is readable by group \(group), which the daemon is not in; fix: \(Self.kubernetesFix)"
            case .kubernetesUnreadable(let path):
                "secret file \(path) (a Kubernetes Secret volume) cannot be read by the daemon's user; fix: \(Self.kubernetesFix)"
            }
        }
    }

    /// The daemon's effective group and its supplementary groups.
    static func processGroups() -> Set<gid_t> {
        var groups = [gid_t](repeating: 0, count: Int(max(getgroups(0, nil), 0)))
        let count = getgroups(Int32(groups.count), &groups)
        return Set(groups.prefix(Int(max(count, 0)))).union([getegid()])
    }

    /// Whether `path` is a file of a volume the kubelet writes atomically (a Secret, a
    /// ConfigMap, a projected volume): `DIR/..data` is a symbolic link to the current
    /// `DIR/..TIMESTAMP` directory, through which `DIR/KEY` leads.
    static func isKubernetesVolume(_ path: String) -> Bool {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var info = stat()
        return lstat(directory + "/..data", &info) == 0 && info.st_mode & S_IFMT == S_IFLNK
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
        let kubernetes = Self.isKubernetesVolume(path)
        if kubernetes {
            // The kubelet's 0440 for the pod's fsGroup; nothing wider.
            guard info.st_mode & 0o037 == 0 else { throw .kubernetesTooOpen(path, mode: info.st_mode) }
            if info.st_mode & 0o040 != 0, !groupIDs.contains(info.st_gid) { throw .kubernetesOtherGroup(path, group: info.st_gid) }
        } else {
            guard info.st_mode & 0o077 == 0 else { throw .tooOpen(path, mode: info.st_mode) }
        }
        guard info.st_uid == 0 || info.st_uid == effectiveUserID else { throw .wrongOwner(path, owner: info.st_uid) }
        guard let data = FileManager.default.contents(atPath: path) else {
            if kubernetes { throw .kubernetesUnreadable(path) }
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
