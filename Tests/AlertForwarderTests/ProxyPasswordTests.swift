import DefenderAPI
import DefenderSimulator
import Foundation
import TestSupport
import Testing

@testable import AlertForwarder

/// The proxy password is a secret like the others: from a 0600 file or a systemd credential,
/// never in `proxy_url`, never in a message (issue 11, hole 7).
@Suite("Proxy password")
struct ProxyPasswordTests {
    let fixture = ConfigFixture()
    static let password = "PROXY-canary-5e1f"

    @Test func aPasswordInProxyURLIsRefusedWithoutEchoingIt() {
        let errors = fixture.errors(
            "[service]\nproxy_url = \"http://alice:\(Self.password)@proxy.example:3128\"\n" + ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        let text = errors.map(\.description).joined(separator: "\n")
        #expect(text.contains("defender-alertd.toml:2: service.proxy_url"), "\(text)")
        #expect(text.contains("proxy_password_file"))
        #expect(text.contains("http://alice:<redacted>@proxy.example:3128"))
        #expect(!text.contains(Self.password))
        // Not a URL at all: still nothing of the password.
        let bad = fixture.errors(
            "[service]\nproxy_url = \"http://alice:\(Self.password)@proxy.example:99999999\"\n" + ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        #expect(bad.count == 1 && !bad[0].description.contains(Self.password), "\(bad)")
    }

    @Test func thePasswordComesFromAFileOrACredential() throws {
        fixture.directory.write("proxy-password", Self.password + "\n", mode: 0o600)
        let fromFile = try fixture.load(
            "[service]\nproxy_url = \"http://alice@proxy.example:3128\"\nproxy_password_file = \"proxy-password\"\n"
                + ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        let server = try #require(fromFile.service.httpSettings(environment: [:]).proxy.server)
        #expect(server.username == "alice" && server.password?.withValue { $0 } == Self.password)
        let credentials = TemporaryDirectory()
        credentials.write("proxy", Self.password, mode: 0o600)
        let fromCredential = try fixture.load(
            "[service]\nproxy_url = \"http://alice@proxy.example:3128\"\nproxy_password_credential = \"proxy\"\n"
                + ConfigFixture.tenant + "\n" + ConfigFixture.sink, environment: ["CREDENTIALS_DIRECTORY": credentials.path])
        #expect(fromCredential.service.httpSettings(environment: [:]).proxy.server?.password?.withValue { $0 } == Self.password)
        // A password needs a user; one source only.
        let noUser = fixture.errors(
            "[service]\nproxy_url = \"http://proxy.example:3128\"\nproxy_password_file = \"proxy-password\"\n"
                + ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        #expect(noUser.contains { $0.description.contains("needs a proxy_url with the user name") }, "\(noUser)")
        let both = fixture.errors(
            "[service]\nproxy_url = \"http://alice@proxy.example:3128\"\nproxy_password_file = \"proxy-password\"\nproxy_password_credential = \"proxy\"\n"
                + ConfigFixture.tenant + "\n" + ConfigFixture.sink, environment: ["CREDENTIALS_DIRECTORY": credentials.path])
        #expect(both.contains { $0.description.contains("set only one of proxy_password_file and proxy_password_credential") }, "\(both)")
        fixture.directory.write("open-password", Self.password, mode: 0o644)
        let open = fixture.errors(
            "[service]\nproxy_url = \"http://alice@proxy.example:3128\"\nproxy_password_file = \"open-password\"\n"
                + ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        #expect(open.contains { $0.description.contains("service.proxy_password_file") }, "\(open)")
    }

    @Test func aProxyThatAsksForTheUserGetsIt() async throws {
        let proxy = try TinyProxy(basicAuth: ("alice", Self.password))
        fixture.directory.write("proxy-password", Self.password + "\n", mode: 0o600)
        fixture.directory.write("wrong-password", "not-the-password\n", mode: 0o600)
        let simulator = try fixtureSimulator()
        let tls = try SimulatorTLS.generate()
        let ca = fixture.directory.write("ca.pem", tls.caCertificatePEM, mode: 0o644)
        try await withLiveSimulator(simulator, tls: tls) { base in
            for (file, works) in [("proxy-password", true), ("wrong-password", false)] {
                let configuration = try fixture.load(
                    """
                    [service]
                    proxy_url = "http://alice@127.0.0.1:\(proxy.port)"
                    proxy_password_file = "\(file)"
                    ca_file = "\(ca)"
                    \(ConfigFixture.tenant)
                    api_url = "\(base)"
                    login_url = "\(base)"
                    \(ConfigFixture.sink)
                    """)
                let transport = try DefenderHTTPClient(settings: configuration.service.httpSettings(environment: [:]))
                let records = LogRecords()
                let connection = try TenantClients(tenant: configuration.tenants[0], transport: transport, logger: records.logger())
                let outcome: Result<Int, DefenderAPIError>
                do throws(DefenderAPIError) {
                    outcome = .success(try await connection.alerts.probe())
                } catch {
                    outcome = .failure(error)
                }
                await transport.shutdown()
                if works {
                    #expect(try outcome.get() == 0)
                    #expect(proxy.log.contains("CONNECT 127.0.0.1"), "\(proxy.log)")
                } else {
                    guard case .failure(let error) = outcome else { Issue.record("a wrong proxy password was accepted"); continue }
                    #expect(!"\(error)".contains(Self.password))
                }
                #expect(!records.fullText.contains(Self.password))
            }
        }
    }
}
