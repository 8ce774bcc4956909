import Foundation
import TestSupport
import Testing

@testable import AlertForwarder

/// `auth = "delegated"` and the token key in the configuration.
@Suite("Configuration: user context")
struct UserContextConfigurationTests {
    let fixture = ConfigFixture()
    static let tenant = """
        [[tenant]]
        name = "contoso"
        tenant_id = "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35"
        client_id = "0a6e9f2c-51d4-4c7e-9b8a-3f2e1d0c9b8a"
        auth = "delegated"
        """

    @Test func aDelegatedTenantHasNoCredentialAndItsTokenMaySealed() throws {
        fixture.directory.write("token-key", "CANARY-token-key", mode: 0o600)
        let configuration = try fixture.load("[service]\ntoken_key_file = \"token-key\"\n" + Self.tenant + "\n" + ConfigFixture.sink)
        #expect(configuration.tenants[0].credential == .signedInUser)
        #expect(configuration.service.tokenKey?.withValue { $0 } == "CANARY-token-key")
        #expect(configuration.overview.contains("a signed-in user (defender-alertd login), refresh token sealed"))
        #expect(!configuration.overview.contains("CANARY"))
        #expect(try fixture.load(Self.tenant + "\n" + ConfigFixture.sink).overview.contains("refresh token not sealed"))
    }

    @Test func aSecretCertificateOrV1WithDelegatedIsNamedWithItsLine() {
        let errors = fixture.errors(Self.tenant + "\nclient_secret_file = \"secret\"\ntoken_version = \"v1\"\n" + ConfigFixture.sink)
        #expect(errors.count == 2, "\(errors)")
        let path = fixture.directory.file("defender-alertd.toml")
        #expect(
            errors.map(\.description).contains {
                $0.hasPrefix("\(path):6: tenant.client_secret_file: with auth = \"delegated\" the token comes from a person's sign-in")
            }, "\(errors)")
        #expect(
            errors.map(\.description).contains {
                $0.hasPrefix("\(path):7: tenant.token_version: the sign-in of auth = \"delegated\" (device code flow) exists on the v2 endpoint only")
            }, "\(errors)")
    }

    @Test func theTokenKeyFollowsTheSecretFileRulesAndComesOnce() {
        fixture.directory.write("open-key", "key", mode: 0o644)
        let open = fixture.errors("[service]\ntoken_key_file = \"open-key\"\n" + Self.tenant + "\n" + ConfigFixture.sink)
        #expect(
            open.first?.description.contains("service.token_key_file: secret file") == true && open.first?.description.contains("chmod 600") == true,
            "\(open)")
        let both = fixture.errors(
            "[service]\ntoken_key_file = \"open-key\"\ntoken_key_credential = \"token-key\"\n" + Self.tenant + "\n" + ConfigFixture.sink)
        #expect(both.contains { $0.description.contains("set only one of token_key_file and token_key_credential") }, "\(both)")
    }
}
