import DefenderAPI
import Foundation
import TestSupport
import Testing

@testable import AlertForwarder

extension ConfigFixture {
    func load(_ text: String, environment: [String: String] = [:], mode: mode_t = 0o644) throws(ConfigurationErrors) -> Configuration {
        try ConfigurationLoader(environment: environment).load(path: writeConfiguration(text, mode: mode))
    }

    /// The problems of an invalid file.
    func errors(_ text: String, environment: [String: String] = [:], mode: mode_t = 0o644) -> [ConfigurationError] {
        do {
            _ = try load(text, environment: environment, mode: mode)
            Issue.record("expected the configuration to be rejected")
            return []
        } catch {
            return error.errors
        }
    }
}

@Suite("Configuration: valid files")
struct ValidConfigurationTests {
    let fixture = ConfigFixture()

    @Test func minimalFileGetsDefaults() throws {
        let configuration = try fixture.load(ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        #expect(configuration.service.pollInterval == .seconds(60))
        #expect(configuration.service.logLevel == .info)
        #expect(configuration.service.maxOutbox == 100_000)
        #expect(configuration.service.stateDirectory == fixture.directory.file("state"))
        let tenant = try #require(configuration.tenants.first)
        #expect(tenant.tenantID == "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35")
        #expect(tenant.cloud == .commercial)
        #expect(tenant.lookback == .seconds(86_400))
        #expect(tenant.overlap == .seconds(900))
        #expect(tenant.pageSize == 1000)
        #expect(tenant.expandEvidence)
        #expect(tenant.forward == .new)
        #expect(tenant.sinkNames == nil)
        #expect(configuration.sinks(for: tenant).map(\.name) == ["journal"])
        guard case .clientSecret(let secret, let location) = tenant.credential else {
            Issue.record("expected a client secret")
            return
        }
        #expect(secret.withValue { $0 } == ConfigFixture.canary)  // trailing newline trimmed
        #expect(location == .file(fixture.directory.file("secret")))
    }

    @Test func stateDirectoryDefaultsToSystemdsStateDirectory() throws {
        let configuration = try fixture.load(
            ConfigFixture.tenant + "\n" + ConfigFixture.sink,
            environment: ["STATE_DIRECTORY": "/var/lib/defender-alertd:/var/lib/other"]
        )
        #expect(configuration.service.stateDirectory == "/var/lib/defender-alertd")
    }

    @Test func theShippedExampleIsValid() throws {
        let credentials = TemporaryDirectory()
        credentials.write("client-secret", "example-secret", mode: 0o400)
        let example = try String(contentsOfFile: packageRoot + "/config/defender-alertd.toml", encoding: .utf8)
        let configuration = try fixture.load(example, environment: ["CREDENTIALS_DIRECTORY": credentials.path])
        #expect(configuration.tenants.map(\.name) == ["contoso"])
        #expect(configuration.sinks.map(\.name) == ["journal", "archive"])
        #expect(
            configuration.sinks[1].kind == .file(path: "/var/log/defender-alertd/alerts.jsonl", format: .alert, maxSize: 100_000_000, maxFiles: 5))
        guard case .clientSecret(_, let location) = configuration.tenants[0].credential else {
            Issue.record("expected a client secret")
            return
        }
        #expect(location == .credential(name: "client-secret", path: credentials.path + "/client-secret"))
    }

    @Test func everyKeyIsRead() throws {
        let configuration = try fixture.load(
            """
            [service]
            state_directory = "/srv/state"
            poll_interval = "1m30s"
            log_level = "DEBUG"
            max_outbox = 5000
            proxy_url = "http://proxy.example:3128"

            [[tenant]]
            name = "fabrikam_eu-1"
            tenant_id = "fabrikam.onmicrosoft.com"
            client_id = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
            client_secret_file = "secret"
            cloud = "commercial"
            region = "EU"
            api_url = "https://proxy.example.net/mde/"
            login_url = "http://[::1]:8080"
            lookback = "2d"
            overlap = "500ms"
            page_size = 10000
            expand_evidence = false
            forward = "updates"
            token_version = "v1"
            rate_limit_per_minute = 50
            rate_limit_per_hour = 1000
            severity = ["high", "Medium"]
            status = ["New", "inprogress"]
            sinks = ["archive"]

            [[sink]]
            name = "archive"
            type = "file"
            path = "out/alerts.jsonl"
            format = "envelope"
            max_size = "5MiB"
            max_files = 2

            [[sink]]
            name = "console"
            type = "stdout"
            """)
        #expect(
            configuration.service
                == ServiceSettings(
                    stateDirectory: "/srv/state", pollInterval: .seconds(90), logLevel: .debug, maxOutbox: 5000,
                    pollTimeout: .seconds(600), caFile: nil, proxyURL: "http://proxy.example:3128"))
        let tenant = configuration.tenants[0]
        #expect(tenant.region == .eu)
        #expect(tenant.apiURL == "https://proxy.example.net/mde")
        #expect(tenant.loginURL == "http://[::1]:8080")
        #expect(tenant.lookback == .seconds(172_800))
        #expect(tenant.overlap == .milliseconds(500))
        #expect(tenant.pageSize == 10_000)
        #expect(!tenant.expandEvidence)
        #expect(tenant.forward == .updates)
        #expect(tenant.tokenVersion == .v1)
        #expect(tenant.rateLimitPerMinute == 50)
        #expect(tenant.rateLimitPerHour == 1000)
        #expect(tenant.severities == ["High", "Medium"])
        #expect(tenant.statuses == ["New", "InProgress"])
        #expect(configuration.sinks(for: tenant).map(\.name) == ["archive"])
        #expect(
            configuration.sinks[0].kind == .file(path: fixture.directory.file("out/alerts.jsonl"), format: .envelope, maxSize: 5 << 20, maxFiles: 2))
        #expect(configuration.sinks[1].kind == .stdout(format: .alert))
    }

    @Test func certificateCredential() throws {
        let pair = try TestCertificate()
        fixture.directory.write("app.pem", pair.pem, mode: 0o644)
        fixture.directory.write("app.key", pair.keyPEM)
        let configuration = try fixture.load(
            """
            [[tenant]]
            name = "contoso"
            tenant_id = "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35"
            client_id = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
            certificate_file = "app.pem"
            private_key_file = "app.key"
            certificate_algorithm = "RS256"
            cloud = "gcc-high"
            \(ConfigFixture.sink)
            """)
        guard case .certificate(let certificate, let pem, let key, _) = configuration.tenants[0].credential else {
            Issue.record("expected a certificate")
            return
        }
        #expect(certificate == fixture.directory.file("app.pem"))
        #expect(pem == pair.pem)
        #expect(key.withValue { $0 == pair.keyPEM.trimmingCharacters(in: .whitespacesAndNewlines) })
        #expect(configuration.tenants[0].cloud == .gccHigh)
        #expect(configuration.tenants[0].certificateAlgorithm == .rs256)
    }

    @Test func overviewNeverShowsTheSecret() throws {
        let configuration = try fixture.load(ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        #expect(!configuration.overview.contains(ConfigFixture.canary))
        #expect(!String(describing: configuration).contains(ConfigFixture.canary))
        var dumped = ""
        dump(configuration, to: &dumped)
        #expect(!dumped.contains(ConfigFixture.canary))
    }
}

/// The package root, from this file's location.
let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()
