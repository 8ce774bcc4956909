import AlertForwarder
import DefenderAPI
import Foundation
import TestSupport
import Testing

/// A user-context tenant's refresh token at rest: sealed with a key when one is configured,
/// 0600 in a 0700 directory, replaced atomically.
@Suite("Refresh tokens at rest")
struct RefreshTokenStoreTests {
    let directory = TemporaryDirectory()
    static let token = Secret("CANARY-refresh-token-0.AXkAq2Bv7f")
    static let client = "0a6e9f2c-51d4-4c7e-9b8a-3f2e1d0c9b8a"

    func store(tenant: String = "contoso", key: String? = "a key from systemd-creds") -> RefreshTokenStore {
        RefreshTokenStore(stateDirectory: directory.file("state"), tenant: tenant, clientID: Self.client, key: key.map(Secret.init))
    }

    func mode(_ path: String) -> mode_t {
        var info = stat()
        stat(path, &info)
        return info.st_mode & 0o777
    }

    @Test func aSealedTokenIsNeverOnDiskAsItIsAndComesBack() throws {
        let sealed = store()
        #expect(try sealed.load() == nil)
        try sealed.save(Self.token)
        #expect(try sealed.load() == Self.token)
        let bytes = try #require(FileManager.default.contents(atPath: sealed.path))
        #expect(String(decoding: bytes, as: UTF8.self).contains("DAT-SEALED-1"))
        #expect(!String(decoding: bytes, as: UTF8.self).contains(Self.token.withValue { $0 }))
        #expect(mode(sealed.path) == 0o600)
        #expect(mode((sealed.path as NSString).deletingLastPathComponent) == 0o700)
    }

    @Test func anotherKeyTenantOrNoKeyIsAClearError() throws {
        try store().save(Self.token)
        #expect(throws: RefreshTokenStore.Failure.self) { try store(key: "another key").load() }
        let unkeyed = #expect(throws: RefreshTokenStore.Failure.self) { try store(key: nil).load() }
        #expect(unkeyed?.description.contains("set token_key_credential") == true)
        // Bound to its tenant: the file copied under another tenant's name does not open.
        try FileManager.default.copyItem(atPath: store().path, toPath: store(tenant: "fabrikam").path)
        let moved = #expect(throws: RefreshTokenStore.Failure.self) { try store(tenant: "fabrikam").load() }
        #expect(moved?.description.contains("defender-alertd login --tenant fabrikam") == true)
    }

    @Test func withoutAKeyItIsKeptReadableByTheDaemonAlone() throws {
        let plain = store(key: nil)
        try plain.save(Self.token)
        #expect(try plain.load() == Self.token)
        #expect(mode(plain.path) == 0o600)
    }

    @Test func aRotationReplacesTheTokenAndACrashMidWayLeavesOne() throws {
        let tokens = store()
        try tokens.save(Self.token)
        let rotated = Secret("CANARY-refresh-token-rotated-1")
        try tokens.save(rotated)
        #expect(try tokens.load() == rotated)
        // A crash after the new file was written, before the rename: the stored token is whole.
        directory.write("state/user-tokens/contoso.token.new", "half a toke", mode: 0o600)
        #expect(try tokens.load() == rotated)
        try tokens.save(Self.token)
        #expect(try tokens.load() == Self.token)
        #expect(!FileManager.default.fileExists(atPath: tokens.path + ".new"))
        #expect(try tokens.delete())
        #expect(try tokens.load() == nil)
        #expect(try tokens.delete() == false)
    }
}
