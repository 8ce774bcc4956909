import DefenderAPI
import Foundation
import TestSupport
import Testing

@testable import AlertForwarder

extension ConfigFixture {
    /// The tenant and one `[[sink]]` of `type` named `name` with `keys`.
    static func sink(_ type: String, named name: String, _ keys: String) -> String {
        tenant + "\n[[sink]]\nname = \"\(name)\"\ntype = \"\(type)\"\n" + keys
    }

    /// The settings of that sink, taken out of its kind by `extract`.
    func sinkSettings<Settings>(
        _ type: String, _ keys: String, environment: [String: String] = [:],
        _ extract: (SinkConfiguration.Kind) -> Settings?
    ) throws -> Settings {
        let configuration = try load(Self.sink(type, named: "s", keys), environment: environment)
        return try #require(extract(configuration.sinks[0].kind), "not a \(type) sink")
    }
}

@Suite("Configuration: syslog sinks")
struct SyslogConfigurationTests {
    let fixture = ConfigFixture()

    func sink(_ keys: String) -> String { ConfigFixture.sink("syslog", named: "siem", keys) }

    func settings(_ keys: String, environment: [String: String] = [:]) throws -> SyslogSettings {
        try fixture.sinkSettings("syslog", keys, environment: environment) { if case .syslog(let settings) = $0 { settings } else { nil } }
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
        let settings = try settings(
            """
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
        #expect(
            settings.message
                == SyslogMessage(syslogProtocol: .rfc3164, facility: .local5, hostname: "collector-1", appName: "mde", enterpriseNumber: 4711))
        #expect(settings.format == .cef && settings.cefAlertJSON && settings.framing == .lf)
        #expect(settings.maxMessageSize == 8192 && settings.timeout == .seconds(5))
        #expect(
            settings.tls
                == SyslogTLS(
                    caFile: fixture.directory.file("ca.pem"), clientCertificateFile: fixture.directory.file("client.pem"),
                    clientKey: Secret(client.key.trimmingCharacters(in: .whitespacesAndNewlines)), serverName: "siem.example"))
    }

    @Test func theClientKeyFromACredential() throws {
        let authority = try TestCertificateAuthority()
        let client = try authority.serverCertificate()
        fixture.directory.write("client.pem", client.certificate, mode: 0o644)
        let credentials = TemporaryDirectory()
        credentials.write("syslog-key", client.key, mode: 0o400)
        let settings = try settings(
            "address = \"tls://siem.example\"\nclient_certificate_file = \"client.pem\"\nclient_key_credential = \"syslog-key\"\n",
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
        (
            "address = \"tls://siem\"\nclient_certificate_file = \"missing.pem\"\nclient_key_file = \"k.pem\"", "sink.client_certificate_file",
            "does not exist"
        ),
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

@Suite("Configuration: http sinks")
struct HTTPConfigurationTests {
    let fixture = ConfigFixture()

    func sink(_ keys: String) -> String { ConfigFixture.sink("http", named: "splunk", keys) }

    func settings(_ keys: String, environment: [String: String] = [:]) throws -> HTTPSinkSettings {
        try fixture.sinkSettings("http", keys, environment: environment) { if case .http(let settings) = $0 { settings } else { nil } }
    }

    @Test func defaults() throws {
        let settings = try settings("url = \"https://hooks.example/alerts?source=mde\"\n")
        #expect(settings == HTTPSinkSettings(url: "https://hooks.example/alerts?source=mde"))
        #expect(settings.format == .json && settings.authorization == .bearer && settings.token == nil && settings.batchMaxAlerts == 1)
        #expect(settings.batchMaxBytes == 5_000_000 && settings.flushInterval == .seconds(1) && settings.timeout == .seconds(30) && !settings.gzip)
        #expect(try self.settings("url = \"https://es.example/_bulk\"\nformat = \"elasticsearch-bulk\"\n").index == "defender-alerts")
        #expect(try self.settings("url = \"https://es.example/_bulk\"\nformat = \"elasticsearch-bulk\"\n").authorization == .apikey)
    }

    @Test func everyKey() throws {
        fixture.directory.write("hec-token", "CANARY-hec-0e1d\n", mode: 0o600)
        let authority = try TestCertificateAuthority()
        fixture.directory.write("ca.pem", authority.pem, mode: 0o644)
        let settings = try settings(
            """
            url = "https://splunk.example:8088/services/collector/event"
            format = "splunk-hec"
            auth = "splunk"
            token_file = "hec-token"
            headers = { "X-Source" = "mde", "X-Team" = "soc" }
            batch_max_alerts = 200
            batch_max_bytes = "1MB"
            flush_interval = "250ms"
            timeout = "10s"
            gzip = true
            index = "security"
            sourcetype = "mde:alert"
            source = "defender-alertd"
            host = "collector-1"
            ca_file = "ca.pem"
            """)
        #expect(
            settings
                == HTTPSinkSettings(
                    url: "https://splunk.example:8088/services/collector/event", format: .splunkHEC, authorization: .splunk,
                    token: Secret("CANARY-hec-0e1d"),
                    headers: ["X-Source": "mde", "X-Team": "soc"], batchMaxAlerts: 200, batchMaxBytes: 1_000_000, flushInterval: .milliseconds(250),
                    timeout: .seconds(10), gzip: true, index: "security", sourcetype: "mde:alert", source: "defender-alertd", host: "collector-1",
                    caFile: fixture.directory.file("ca.pem")))
        let overview = try fixture.load(
            sink("url = \"https://splunk.example/services/collector/event\"\nformat = \"splunk-hec\"\ntoken_file = \"hec-token\"\n")
        ).overview
        #expect(overview.contains("http https://splunk.example/services/collector/event (splunk-hec, splunk token)"))
        #expect(!overview.contains("CANARY"))
    }

    @Test func theTokenFromACredential() throws {
        let credentials = TemporaryDirectory()
        credentials.write("hec-token", "CANARY-hec-cred", mode: 0o400)
        let settings = try settings(
            "url = \"https://splunk.example/services/collector/event\"\ntoken_credential = \"hec-token\"\n",
            environment: ["CREDENTIALS_DIRECTORY": credentials.path])
        #expect(settings.token == Secret("CANARY-hec-cred"))
    }

    @Test(arguments: [
        ("url = \"ftp://splunk.example\"", "sink.url", "http(s) URL"),
        ("url = \"http://splunk.example/services/collector/event\"", "sink.url", "loopback"),
        ("url = \"https://user:pw@splunk.example/x\"", "sink.url", "holds a user name or password"),
        ("format = \"splunk-hec\"", "sink.url", "required key is missing"),
        ("url = \"https://s.example\"\nformat = \"hec\"", "sink.format", "splunk-hec"),
        ("url = \"https://s.example\"\nauth = \"bearer\"", "sink.auth", "needs token_file or token_credential"),
        ("url = \"https://s.example\"\nformat = \"splunk-hec\"", "sink.token_file", "HEC refuses every request without a token"),
        ("url = \"https://s.example\"\nauth = \"digest\"\ntoken_file = \"t\"", "sink.auth", "apikey"),
        ("url = \"https://s.example\"\ntoken_file = \"missing-token\"", "sink.token_file", "does not exist"),
        ("url = \"https://s.example\"\ntoken_file = \"t\"\ntoken_credential = \"t\"", "sink.token_credential", "only one"),
        ("url = \"https://s.example\"\nheaders = { Authorization = \"Splunk x\" }", "sink.headers", "token_file or token_credential"),
        ("url = \"https://s.example\"\nheaders = { \"X Bad\" = \"1\" }", "sink.headers", "not a header name"),
        ("url = \"https://s.example\"\nheaders = { \"X-N\" = 1 }", "sink.headers", "must be a string"),
        ("url = \"https://s.example\"\nheaders = \"X-Source: mde\"", "sink.headers", "table of strings"),
        ("url = \"https://s.example\"\nbatch_max_alerts = 0", "sink.batch_max_alerts", "out of range"),
        ("url = \"https://s.example\"\nbatch_max_bytes = \"10B\"", "sink.batch_max_bytes", "at least 1KB"),
        ("url = \"https://s.example\"\nflush_interval = \"soon\"", "sink.flush_interval", "not a duration"),
        ("url = \"https://s.example\"\nsourcetype = \"x\"", "sink.sourcetype", "applies to format = \"splunk-hec\" only"),
        ("url = \"https://s.example\"\nindex = \"x\"", "sink.index", "splunk-hec and elasticsearch-bulk only"),
        ("url = \"https://s.example\"\nca_file = \"missing.pem\"", "sink.ca_file", "does not exist"),
        ("url = \"https://s.example\"\naddress = \"tcp://x\"", "sink.address", "unknown key"),
    ])
    func rejected(keys: String, key: String, phrase: String) throws {
        // Not a word: a secret the loader reads is masked in every log line of the process
        // from then on, and "token" would mask that word in other tests' messages.
        fixture.directory.write("t", "CANARY-t-9c4e", mode: 0o600)
        let errors = fixture.errors(sink(keys))
        let error = try #require(errors.first { $0.key == key }, "\(errors)")
        #expect(error.message.contains(phrase), "\(error.message)")
        #expect(error.line != nil, "\(error)")
    }

    @Test func aTokenFileTooOpenIsRefusedWithTheFix() throws {
        fixture.directory.write("hec-token", "CANARY-hec-open", mode: 0o644)
        let errors = fixture.errors(sink("url = \"https://s.example\"\ntoken_file = \"hec-token\""))
        #expect(errors.map(\.key) == ["sink.token_file"])
        #expect(errors.first?.message.contains("chmod 600") == true)
        #expect(!errors.description.contains("CANARY"))
    }
}
