import DefenderAPI
import Foundation
import TestSupport
import Testing

@testable import AlertForwarder

/// `[service] state_database`: a URL without a password, TLS by libpq's names (verify-full by
/// default off loopback), the password by the secret file rules.
@Suite("State database configuration")
struct StateDatabaseConfigurationTests {
    let fixture = ConfigFixture()
    static let password = "PG-canary-7c2a"

    func service(_ lines: String) -> String { "[service]\n" + lines + "\n" + ConfigFixture.tenant + "\n" + ConfigFixture.sink }

    @Test func theURLItsTLSAndThePassword() throws {
        fixture.directory.write("pg-password", Self.password + "\n", mode: 0o600)
        let remote = try fixture.load(
            service("state_database = \"postgresql://alertd@db.example:6432/alerts\"\nstate_database_password_file = \"pg-password\""))
        let settings = try #require(remote.service.stateDatabase)
        #expect(settings.host == "db.example" && settings.port == 6432 && settings.user == "alertd" && settings.database == "alerts")
        #expect(settings.tls == .verifyFull)
        #expect(settings.password?.withValue { $0 } == Self.password)
        #expect(settings.leaseTTL == .seconds(30))
        #expect(remote.warnings.isEmpty)
        let local = try fixture.load(service("state_database = \"postgres://alertd@127.0.0.1/alerts\"\nlease_ttl = \"10s\""))
        #expect(local.service.stateDatabase?.tls == .disable)
        #expect(local.service.stateDatabase?.port == 5432)
        #expect(local.service.stateDatabase?.leaseTTL == .seconds(10))
        let weak = try fixture.load(service("state_database = \"postgresql://alertd@db.example/alerts?sslmode=require\""))
        #expect(weak.warnings.contains { $0.contains("sslmode=require") && $0.contains("verify-full") }, "\(weak.warnings)")
        #expect(try fixture.load(ConfigFixture.tenant + "\n" + ConfigFixture.sink).service.stateDatabase == nil)
        // poll-once is for a daemon alone: refused with the reason, never ignored.
        let refused = #expect(throws: StateError.self) { try StateStore.open(remote.service) }
        #expect(refused?.kind == .incompatible)
        #expect(refused?.description.contains("a group on PostgreSQL polls with its daemons") == true)
    }

    /// In a group a signed-in user's refresh token is kept in PostgreSQL, sealed only: a
    /// delegated tenant needs the token key, and is accepted with one.
    @Test func aDelegatedTenantInAGroupNeedsTheTokenKey() throws {
        let delegated = """
            [[tenant]]
            name = "contoso"
            tenant_id = "4F8E2C1A-7B3D-4E59-9A6C-2D1F0E8B7C35"
            client_id = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
            auth = "delegated"

            """ + ConfigFixture.sink
        let text = fixture.errors("[service]\nstate_database = \"postgresql://alertd@127.0.0.1/alerts\"\n" + delegated)
            .map(\.description).joined(separator: "\n")
        #expect(text.contains("tenant.auth") && text.contains("needs token_key_credential"), "\(text)")
        fixture.directory.write("token-key", "a key of 32 bytes or more, any text", mode: 0o600)
        let keyed = try fixture.load(
            "[service]\nstate_database = \"postgresql://alertd@127.0.0.1/alerts\"\ntoken_key_file = \"token-key\"\n" + delegated)
        #expect(keyed.service.tokenKey != nil)
    }

    @Test func whatIsRefusedAndWhy() {
        let cases: [(String, String)] = [
            ("state_database = \"postgresql://alertd:\(Self.password)@db.example/alerts\"", "state_database_password_file"),
            ("state_database = \"postgresql://alertd@db.example/alerts?sslmode=prefer\"", "falls back to clear text"),
            ("state_database = \"postgresql://alertd@db.example/alerts?sslrootcert=/x\"", "only sslmode"),
            ("state_database = \"postgresql://db.example/alerts\"", "names no user"),
            ("state_database = \"postgresql://alertd@db.example/\"", "names no database"),
            ("state_database = \"postgresql://alertd@db.example:70000/alerts\"", "is not 1...65535"),
            ("state_database = \"mysql://alertd@db.example/alerts\"", "is not a PostgreSQL URL"),
            ("state_database_password_file = \"pg-password\"", "state_database is not"),
            ("member_name = \"alertd-1\"", "state_database is not"),
            ("state_database = \"postgresql://alertd@db.example/alerts\"\nmember_name = \"a b\"", "is not a valid name"),
            ("state_database = \"postgresql://alertd@db.example/alerts\"\nlease_ttl = \"1s\"", "lease_ttl"),
        ]
        fixture.directory.write("pg-password", Self.password, mode: 0o600)
        for (lines, expected) in cases {
            let text = fixture.errors(service(lines)).map(\.description).joined(separator: "\n")
            #expect(text.contains(expected), "\(lines): \(text)")
            #expect(!text.contains(Self.password), "\(lines): \(text)")
        }
    }
}
