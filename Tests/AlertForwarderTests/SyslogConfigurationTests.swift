@testable import AlertForwarder
import DefenderAPI
import Foundation
import Testing
import TestSupport

@Suite("Configuration: syslog sinks")
struct SyslogConfigurationTests {
    let fixture = ConfigFixture()

    func sink(_ keys: String) -> String {
        ConfigFixture.tenant + "\n[[sink]]\nname = \"siem\"\ntype = \"syslog\"\n" + keys
    }

    func settings(_ keys: String, environment: [String: String] = [:]) throws -> SyslogSettings {
        let configuration = try fixture.load(sink(keys), environment: environment)
        guard case .syslog(let settings) = configuration.sinks[0].kind else {
            Issue.record("not a syslog sink")
            throw CancellationError()
        }
        return settings
    }

    @Test func defaults() throws {
        let settings = try settings("address = \"tcp://siem.example\"\n")
        #expect(settings.address == SyslogAddress(transport: .tcp, host: "siem.example", port: 601))
        #expect(settings.message == SyslogMessage(hostname: ProcessInfo.processInfo.hostName))
        #expect(settings.format == .json && !settings.cefAlertJSON && settings.framing == .octetCounting)
        #expect(settings.maxMessageSize == 65_536 && settings.timeout == .seconds(30) && settings.tls == nil)
    }

    @Test func everyKey() throws {
        let authority = try TestCertificateAuthority()
        let client = try authority.serverCertificate()
        fixture.directory.write("ca.pem", authority.pem, mode: 0o644)
        fixture.directory.write("client.pem", client.certificate, mode: 0o644)
        fixture.directory.write("client-key.pem", client.key, mode: 0o600)
        let settings = try settings("""
            address = "tls://[2001:db8::5]:6515"
            protocol = "RFC3164"
            format = "cef"
            cef_alert_json = true
            framing = "lf"
            facility = "local5"
            app_name = "mde"
            hostname = "collector-1"
            enterprise_number = 4711
            max_message_size = "8KiB"
            timeout = "5s"
            ca_file = "ca.pem"
            client_certificate_file = "client.pem"
            client_key_file = "client-key.pem"
            server_name = "siem.example"
            """)
        #expect(settings.address == SyslogAddress(transport: .tls, host: "2001:db8::5", port: 6515))
        #expect(settings.message == SyslogMessage(syslogProtocol: .rfc3164, facility: .local5, hostname: "collector-1", appName: "mde", enterpriseNumber: 4711))
        #expect(settings.format == .cef && settings.cefAlertJSON && settings.framing == .lf)
        #expect(settings.maxMessageSize == 8192 && settings.timeout == .seconds(5))
        #expect(settings.tls == SyslogTLS(caFile: fixture.directory.file("ca.pem"), clientCertificateFile: fixture.directory.file("client.pem"),
                                         clientKey: Secret(client.key.trimmingCharacters(in: .whitespacesAndNewlines)), serverName: "siem.example"))
    }

    @Test func theClientKeyFromACredential() throws {
        let authority = try TestCertificateAuthority()
        let client = try authority.serverCertificate()
        fixture.directory.write("client.pem", client.certificate, mode: 0o644)
        let credentials = TemporaryDirectory()
        credentials.write("syslog-key", client.key, mode: 0o400)
        let settings = try settings("address = \"tls://siem.example\"\nclient_certificate_file = \"client.pem\"\nclient_key_credential = \"syslog-key\"\n",
                                    environment: ["CREDENTIALS_DIRECTORY": credentials.path])
        #expect(settings.tls?.clientKey != nil)
    }

    /// Each broken sink: the key named, the line of the key, and the message's gist.
    @Test(arguments: [
        ("address = \"siem.example:514\"", "sink.address", "udp://"),
        ("address = \"http://siem.example\"", "sink.address", "http"),
        ("address = \"tcp://siem.example:99999\"", "sink.address", "port"),
        ("address = \"tcp://\"", "sink.address", "host"),
        ("address = \"udp://siem\"\nframing = \"lf\"", "sink.framing", "tcp:// and tls:// only"),
        ("address = \"tcp://siem\"\nca_file = \"/etc/ssl/certs/ca-certificates.crt\"", "sink.ca_file", "tls:// addresses only"),
        ("address = \"tls://siem\"\nca_file = \"missing.pem\"", "sink.ca_file", "does not exist"),
        ("address = \"tls://siem\"\nclient_certificate_file = \"missing.pem\"\nclient_key_file = \"k.pem\"", "sink.client_certificate_file", "does not exist"),
        ("address = \"tls://siem\"\nclient_key_file = \"k.pem\"", "sink.client_key_file", "needs client_certificate_file"),
        ("address = \"tcp://siem\"\nformat = \"envelope\"", "sink.format", "json, cef"),
        ("address = \"tcp://siem\"\ncef_alert_json = true", "sink.cef_alert_json", "format = \"cef\" only"),
        ("address = \"tcp://siem\"\nfacility = \"local8\"", "sink.facility", "local7"),
        ("address = \"tcp://siem\"\napp_name = \"defender alertd\"", "sink.app_name", "printable ASCII without spaces"),
        ("address = \"tcp://siem\"\nmax_message_size = \"100B\"", "sink.max_message_size", "at least 480"),
        ("address = \"tcp://siem\"\ntimeout = \"1ms\"", "sink.timeout", "100ms"),
        ("address = \"tcp://siem\"\npath = \"x\"", "sink.path", "unknown key"),
        ("protocol = \"rfc5424\"", "sink.address", "required key is missing"),
    ])
    func rejected(keys: String, key: String, phrase: String) throws {
        let errors = fixture.errors(sink(keys))
        let error = try #require(errors.first { $0.key == key }, "\(errors)")
        #expect(error.message.contains(phrase), "\(error.message)")
        #expect(error.line != nil, "\(error)")
        #expect(error.description.hasPrefix(fixture.directory.file("defender-alertd.toml") + ":"))
    }

    @Test func aClientKeyTooOpenIsRefusedWithTheFix() throws {
        let authority = try TestCertificateAuthority()
        let client = try authority.serverCertificate()
        fixture.directory.write("client.pem", client.certificate, mode: 0o644)
        fixture.directory.write("k.pem", client.key, mode: 0o644)
        let errors = fixture.errors(sink("address = \"tls://siem\"\nclient_certificate_file = \"client.pem\"\nclient_key_file = \"k.pem\""))
        #expect(errors.map(\.key) == ["sink.client_key_file"])
        #expect(errors.first?.message.contains("chmod 600") == true)
        #expect(!errors.description.contains("PRIVATE KEY"))
    }
}
