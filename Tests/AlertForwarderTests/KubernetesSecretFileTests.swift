import Foundation
import TestSupport
import Testing

@testable import AlertForwarder

/// A Kubernetes Secret volume as the kubelet writes it: `DIR/KEY` → `..data/KEY`, `..data` →
/// `..TIMESTAMP/`, the file `defaultMode` with group read added for the pod's `fsGroup`, its
/// group the `fsGroup`, its owner root.
@Suite("Secret files in a Kubernetes Secret volume")
struct KubernetesSecretFileTests {
    let directory = TemporaryDirectory()

    /// The kubelet's layout with one key, `client-secret`; returns the path the daemon reads.
    func secretVolume(mode: mode_t, group: gid_t) -> String {
        let stamped = directory.file("..2026_12_07_09_10_11.123456789")
        try? FileManager.default.createDirectory(atPath: stamped, withIntermediateDirectories: false)
        let file = stamped + "/client-secret"
        _ = FileManager.default.createFile(atPath: file, contents: Data("\(ConfigFixture.canary)\n".utf8))
        chown(file, 0, group)
        chmod(file, mode)
        symlink("..2026_12_07_09_10_11.123456789", directory.file("..data"))
        symlink("..data/client-secret", directory.file("client-secret"))
        return directory.file("client-secret")
    }

    /// The daemon's own group, as an `fsGroup` makes it; and a group it is not in.
    var reader: SecretFileReader { SecretFileReader(effectiveUserID: geteuid(), groupIDs: [4243]) }

    @Test(.enabled(if: geteuid() == 0, "the kubelet's files are owned by root: only root can make one"))
    func theKubeletsGroupReadableFileForTheDaemonsGroupIsAccepted() throws {
        let path = secretVolume(mode: 0o440, group: 4243)
        #expect(SecretFileReader.isKubernetesVolume(path))
        #expect(try reader.read(path).withValue { $0 } == ConfigFixture.canary)
        // defaultMode 0400 without an fsGroup: no group bit, accepted too (readable by root).
        chmod(directory.file("..data/client-secret"), 0o400)
        #expect(try reader.read(path).withValue { $0 } == ConfigFixture.canary)
    }

    @Test(.enabled(if: geteuid() == 0, "the kubelet's files are owned by root: only root can make one"))
    func theDefaultModeOrAnotherGroupIsRefusedWithWhatToChange() throws {
        // Kubernetes' own default, 0644.
        let path = secretVolume(mode: 0o644, group: 4243)
        #expect {
            _ = try reader.read(path)
        } throws: { error in
            (error as? SecretFileReader.Failure) == .kubernetesTooOpen(path, mode: S_IFREG | 0o644)
                && (error as? SecretFileReader.Failure)?.message.contains("set defaultMode: 0400 on the Secret volume") == true
        }
        // Group-writable.
        chmod(directory.file("..data/client-secret"), 0o460)
        #expect(throws: SecretFileReader.Failure.kubernetesTooOpen(path, mode: S_IFREG | 0o460)) { try reader.read(path) }
        // Readable by a group the daemon is not in (no fsGroup, or another one).
        chmod(directory.file("..data/client-secret"), 0o440)
        chown(directory.file("..data/client-secret"), 0, 4244)
        #expect {
            _ = try reader.read(path)
        } throws: { error in
            (error as? SecretFileReader.Failure) == .kubernetesOtherGroup(path, group: 4244)
                && (error as? SecretFileReader.Failure)?.message.contains("securityContext.fsGroup") == true
        }
    }

    /// The exception is the kubelet's layout only: the same file elsewhere is refused as always.
    @Test func aGroupReadableFileOutsideAKubeletVolumeIsRefusedAsBefore() throws {
        let path = directory.write("client-secret", ConfigFixture.canary, mode: 0o440)
        #expect(!SecretFileReader.isKubernetesVolume(path))
        #expect {
            _ = try SecretFileReader(effectiveUserID: geteuid(), groupIDs: [getegid()]).read(path)
        } throws: { error in
            (error as? SecretFileReader.Failure)?.message.contains("chmod 600 \(path)") == true
        }
    }

    @Test func anUnreadableFileInAKubeletVolumeSaysWhatToChange() {
        #expect(
            SecretFileReader.Failure.kubernetesUnreadable("/etc/defender-alertd/secrets/client-secret").message
                == "secret file /etc/defender-alertd/secrets/client-secret (a Kubernetes Secret volume) cannot be read by the daemon's user; fix: set defaultMode: 0400 on the Secret volume and the pod's securityContext.fsGroup to the daemon's group (65532 in the image)"
        )
    }
}
