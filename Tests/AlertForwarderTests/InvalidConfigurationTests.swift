import AlertForwarder
import DefenderAPI
import Foundation
import TestSupport
import Testing

@Suite("Configuration: every kind of broken file is rejected with file, line and key")
struct InvalidConfigurationTests {
    let fixture = ConfigFixture()
    var path: String { fixture.directory.file("defender-alertd.toml") }

    func single(_ text: String, environment: [String: String] = [:]) throws -> ConfigurationError {
        let errors = fixture.errors(text, environment: environment)
        #expect(errors.count == 1, "\(errors)")
        return try #require(errors.first)
    }

    @Test(arguments: ["[/x]", "[.service]", "[[ @sink]]", "[é]", "[{x]", "[[+tenant]]", "[", "[[ "])
    func aTableNameThatCannotBeAKeyIsASyntaxErrorNotACrash(header: String) {
        // Found by fuzzing: toml++ stopped the process on an assertion for these.
        let errors = fixture.errors("[service]\nlog_level = \"info\"\n" + header + "\nname = \"x\"\n")
        #expect(errors.count == 1)
        #expect(errors.first?.description.contains("defender-alertd.toml:3: TOML syntax error: a table") == true, "\(errors)")
    }

    @Test func bracketsInsideValuesAreNotTableNames() throws {
        // A line of a multi-line array, or of a multi-line string, that starts with '[' is no
        // header: whatever is wrong with this file, it is not a table name.
        let errors = fixture.errors(ConfigFixture.tenant + "\nseverity = [\n[ +1 ],\n]\nstatus = \"\"\"\n[/x]\n\"\"\"\n" + ConfigFixture.sink)
        #expect(!errors.isEmpty && !errors.contains { $0.description.contains("table name") }, "\(errors)")
    }

    @Test(arguments: ["\u{0}", "\u{13}", "\u{7F}", "\u{1B}"])
    func aControlCharacterIsASyntaxErrorNotACrash(character: String) {
        // Found by fuzzing: a NUL in a key stopped the process on an assertion of toml++.
        let errors = fixture.errors("[service]\nlog_level = \"info\"\n[[tenant" + character + "]]\nname = \"x\"\n")
        #expect(errors.count == 1)
        #expect(errors.first?.description.contains("defender-alertd.toml:3:") == true, "\(errors)")
        #expect(errors.first?.description.contains("control character") == true)
    }

    @Test func syntaxError() throws {
        let error = try single("[service]\npoll_interval = \"60s\"\nlog_level = \n")
        #expect(error.path == path)
        #expect(error.line == 3)
        #expect(error.message.hasPrefix("TOML syntax error"))
        #expect(error.description.hasPrefix("\(path):3: TOML syntax error"))
    }

    @Test func unknownKeySuggestsTheRightOne() throws {
        let error = try single("[service]\npoll_intervall = \"60s\"\n" + ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        #expect(error.line == 2)
        #expect(error.key == "service.poll_intervall")
        #expect(error.message == "unknown key (did you mean \"poll_interval\"?)")
        #expect(error.description == "\(path):2: service.poll_intervall: unknown key (did you mean \"poll_interval\"?)")
    }

    @Test func unknownTopLevelTable() throws {
        let error = try single(ConfigFixture.tenant + "\n" + ConfigFixture.sink + "\n[servce]\nx = 1\n")
        #expect(error.key == "servce")
        #expect(error.line == 9)
    }

    @Test func wrongType() throws {
        let error = try single("[service]\nmax_outbox = \"lots\"\n" + ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        #expect(error.line == 2)
        #expect(error.key == "service.max_outbox")
        #expect(error.message == "expected an integer, found string")
    }

    @Test(arguments: ["60", "\"60\"", "\"sixty seconds\"", "\"5 m\"", "\"-5s\"", "\"\"", "\"1w\"", "\"0s\""])
    func badDuration(value: String) throws {
        let error = try single("[service]\npoll_interval = \(value)\n" + ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        #expect(error.line == 2)
        #expect(error.key == "service.poll_interval")
    }

    @Test func outOfRangeAndBadEnumerations() throws {
        let errors = fixture.errors(
            ConfigFixture.tenant + """

                page_size = 0
                forward = "everything"
                cloud = "azure"
                severity = ["High", "Severe"]
                status = []

                """ + ConfigFixture.sink)
        #expect(errors.map(\.key) == ["tenant.page_size", "tenant.forward", "tenant.cloud", "tenant.severity", "tenant.status"])
        #expect(errors.map(\.line) == [6, 7, 8, 9, 10])
        #expect(errors[1].message.contains("new, updates"))
    }

    @Test func loosePermissionsOnTheSecretName() throws {
        let loose = ConfigFixture(secretMode: 0o640)
        let errors = loose.errors(ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        let error = try #require(errors.first)
        #expect(errors.count == 1)
        #expect(error.line == 5)
        #expect(error.key == "tenant.client_secret_file")
        #expect(error.message.contains("chmod 600 \(loose.directory.file("secret"))"))
    }

    @Test func missingSecretFile() throws {
        let error = try single(ConfigFixture.tenant.replacingOccurrences(of: "\"secret\"", with: "\"nope\"") + "\n" + ConfigFixture.sink)
        #expect(error.key == "tenant.client_secret_file")
        #expect(error.message.contains("does not exist"))
    }

    /// Runs as root (CI) and as anyone else: root gives the file away; another user runs the
    /// loader as if the daemon were a third user, so that the file's owner is neither.
    @Test func secretOwnedBySomeoneElse() throws {
        let path = fixture.writeConfiguration(ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        let owner: uid_t
        let loader: ConfigurationLoader
        if geteuid() == 0 {
            chown(fixture.directory.file("secret"), 4242, 4242)
            (owner, loader) = (4242, ConfigurationLoader(environment: [:]))
        } else {
            (owner, loader) = (geteuid(), ConfigurationLoader(environment: [:], effectiveUserID: geteuid() + 1))
        }
        #expect {
            _ = try loader.load(path: path)
        } throws: { error in
            let message = (error as? ConfigurationErrors)?.errors.first?.message ?? ""
            return message.contains("owned by uid \(owner)") && message.contains("chown root")
        }
    }

    @Test func emptySecretFile() throws {
        fixture.directory.write("secret", "\n")
        let error = try single(ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        #expect(error.message.contains("is empty"))
    }

    @Test func missingConfigurationFile() throws {
        do {
            _ = try ConfigurationLoader().load(path: fixture.directory.file("absent.toml"))
            Issue.record("expected failure")
        } catch {
            #expect(error.errors.first?.description == "\(fixture.directory.file("absent.toml")): configuration file not found")
        }
    }

    @Test(arguments: [0o664 as mode_t, 0o646])
    func groupOrWorldWritableConfigurationFile(mode: mode_t) throws {
        let errors = fixture.errors(ConfigFixture.tenant + "\n" + ConfigFixture.sink, mode: mode)
        #expect(errors.count == 1)
        #expect(errors.first?.message.contains("chmod go-w \(path)") == true)
    }

    @Test func inlineSecretIsRefusedWithAHint() throws {
        let errors = fixture.errors(ConfigFixture.tenant + "\nclient_secret = \"\(ConfigFixture.canary)\"\n" + ConfigFixture.sink)
        let error = try #require(errors.first { $0.key == "tenant.client_secret" })
        #expect(error.message.contains("client_secret_file"))
        #expect(!errors.description.contains(ConfigFixture.canary))
    }

    @Test func credentialsMustBeExactlyOne() throws {
        let none = try single(
            """
            [[tenant]]
            name = "a"
            tenant_id = "contoso.onmicrosoft.com"
            client_id = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
            \(ConfigFixture.sink)
            """)
        #expect(none.line == 1)
        #expect(none.message.contains("no credential"))
        let two = try single(ConfigFixture.tenant + "\nclient_secret_credential = \"x\"\n" + ConfigFixture.sink)
        #expect(two.message.contains("several credentials"))
    }

    @Test func credentialNeedsSystemd() throws {
        let error = try single(
            ConfigFixture.tenant.replacingOccurrences(of: "client_secret_file = \"secret\"", with: "client_secret_credential = \"client-secret\"")
                + "\n" + ConfigFixture.sink)
        #expect(error.key == "tenant.client_secret_credential")
        #expect(error.message.contains("CREDENTIALS_DIRECTORY is not set"))
    }

    @Test func credentialFileMustExist() throws {
        let credentials = TemporaryDirectory()
        let error = try single(
            ConfigFixture.tenant.replacingOccurrences(of: "client_secret_file = \"secret\"", with: "client_secret_credential = \"client-secret\"")
                + "\n" + ConfigFixture.sink,
            environment: ["CREDENTIALS_DIRECTORY": credentials.path])
        #expect(error.message.contains("\(credentials.path)/client-secret does not exist"))
    }

    func certificateTenant(keyLine: String) -> String {
        ConfigFixture.tenant.replacingOccurrences(of: "client_secret_file = \"secret\"", with: "certificate_file = \"app.pem\"\n" + keyLine)
            + "\n" + ConfigFixture.sink
    }

    @Test func certificateProblems() throws {
        fixture.directory.write("app.pem", "not a certificate", mode: 0o644)
        fixture.directory.write("app.key", "not a key")
        let errors = fixture.errors(certificateTenant(keyLine: "private_key_file = \"app.key\""))
        #expect(errors.map(\.key) == ["tenant.certificate_file"])

        let pair = try TestCertificate()
        fixture.directory.write("app.pem", pair.pem, mode: 0o644)
        let badKey = try single(certificateTenant(keyLine: "private_key_file = \"app.key\""))
        #expect(badKey.key == "tenant.private_key_file")
        #expect(badKey.message.contains("no PEM private key"))

        let keyless = try single(certificateTenant(keyLine: ""))
        #expect(keyless.message.contains("needs private_key_file or private_key_credential"))

        let twoKeys = try single(certificateTenant(keyLine: "private_key_file = \"app.key\"\nprivate_key_credential = \"k\""))
        #expect(twoKeys.message.contains("only one of private_key_file and private_key_credential"))
    }

    @Test func keyMustMatchTheCertificateBeStrongAndCurrent() throws {
        let pair = try TestCertificate(), other = try TestCertificate()
        fixture.directory.write("app.pem", pair.pem, mode: 0o644)
        fixture.directory.write("app.key", other.keyPEM)
        let mismatch = try single(certificateTenant(keyLine: "private_key_file = \"app.key\""))
        #expect(mismatch.key == "tenant.certificate_file")
        #expect(mismatch.message.contains("does not belong to the certificate"))
        #expect(!mismatch.message.contains("PRIVATE KEY"))

        let weak = try TestCertificate(unsafeBits: 1024)
        fixture.directory.write("app.pem", weak.pem, mode: 0o644)
        fixture.directory.write("app.key", weak.keyPEM)
        let weakError = try single(certificateTenant(keyLine: "private_key_file = \"app.key\""))
        #expect(weakError.message.contains("shorter than 2048 bits"), "\(weakError)")

        let expired = try TestCertificate(notValidAfter: Date().addingTimeInterval(-86_400))
        fixture.directory.write("app.pem", expired.pem, mode: 0o644)
        fixture.directory.write("app.key", expired.keyPEM)
        #expect(try single(certificateTenant(keyLine: "private_key_file = \"app.key\"")).message.contains("expired"))

        let keyMode = try TestCertificate()
        fixture.directory.write("app.pem", keyMode.pem, mode: 0o644)
        fixture.directory.write("app.key", keyMode.keyPEM, mode: 0o644)
        #expect(try single(certificateTenant(keyLine: "private_key_file = \"app.key\"")).message.contains("chmod 600"))
    }

    @Test func caFileAndProxyAreChecked() throws {
        fixture.directory.write("ca.pem", "garbage", mode: 0o644)
        let errors = fixture.errors("[service]\nca_file = \"ca.pem\"\nproxy_url = \"ftp://x\"\n" + ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        #expect(errors.map(\.key) == ["service.ca_file", "service.proxy_url"])
        let missing = fixture.errors("[service]\nca_file = \"none.pem\"\n" + ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        #expect(missing.first?.message.contains("does not exist") == true)
    }

    @Test func namesMustBeUniqueAndReferencesMustExist() throws {
        let errors = fixture.errors(
            """
            \(ConfigFixture.tenant)
            sinks = ["siem"]
            \(ConfigFixture.tenant)
            \(ConfigFixture.sink)
            \(ConfigFixture.sink)
            """)
        #expect(errors.map(\.key) == ["tenant.sinks", "tenant.name", "sink.name"])
        #expect(errors[0].message.contains("no [[sink]] is named \"siem\""))
        #expect(errors[1].line == 8)
        #expect(errors[2].line == 16)
    }

    @Test func unsafeOrInvalidURLs() throws {
        let errors = fixture.errors(
            ConfigFixture.tenant + """

                api_url = "http://10.0.0.5:8080"
                login_url = "ftp://x"

                """ + ConfigFixture.sink)
        #expect(errors.map(\.key) == ["tenant.api_url", "tenant.login_url"])
        #expect(errors[0].message.contains("only to loopback"))
    }

    @Test func regionOnlyInTheCommercialCloud() throws {
        let error = try single(ConfigFixture.tenant + "\ncloud = \"dod\"\nregion = \"eu\"\n" + ConfigFixture.sink)
        #expect(error.key == "tenant.region")
    }

    /// Plain HTTP goes only to loopback addresses, decided by address, never by the look of a
    /// name (issue 11, hole 13).
    @Test(arguments: ["http://127.attacker.example", "http://127.0.0.1.nip.io", "http://[::2]:8080", "http://127.1:8080", "http://localhost.example"])
    func plainHTTPToANameThatLooksLocalIsRefused(url: String) throws {
        let error = try single(ConfigFixture.tenant + "\napi_url = \"\(url)\"\n" + ConfigFixture.sink)
        #expect(error.key == "tenant.api_url")
        #expect(error.message.contains("only to loopback addresses"), "\(error.message)")
    }

    @Test(arguments: ["http://127.0.0.1:8080", "http://127.9.8.7", "http://[::1]:8080", "http://localhost:8080"])
    func plainHTTPToLoopbackIsAccepted(url: String) throws {
        let configuration = try fixture.load(ConfigFixture.tenant + "\napi_url = \"\(url)\"\nlogin_url = \"\(url)\"\n" + ConfigFixture.sink)
        #expect(configuration.tenants.map(\.apiURL) == [url])
        #expect(configuration.tenants.map(\.loginURL) == [url])
    }

    /// A port past 65535 used to wrap around (99999999 connected to 57599; hole 18).
    @Test func portsOutOfRangeAreRefused() throws {
        let errors = fixture.errors(
            "[service]\nproxy_url = \"http://proxy.example:99999999\"\n" + ConfigFixture.tenant
                + "\napi_url = \"https://api.example:70000\"\n" + ConfigFixture.sink)
        #expect(errors.map(\.key) == ["service.proxy_url", "tenant.api_url"], "\(errors)")
        #expect(errors.last?.message.contains("port \"70000\"") == true, "\(errors)")
    }

    /// A port that does not fit a 64-bit integer was read by Foundation as no port at all: the
    /// proxy's default 3128, or port 80 for a sink (issue 23, item 6).
    @Test(arguments: ["99999999999999999999", "18446744073709551616", "0", "-1", "", "80a", "+80"])
    func portsThatOverflowOrAreNoNumberAreRefused(port: String) throws {
        let errors = fixture.errors(
            "[service]\nproxy_url = \"http://proxy.example:\(port)\"\n" + ConfigFixture.tenant
                + "\napi_url = \"https://api.example:\(port)/\"\n[[sink]]\nname = \"siem\"\ntype = \"http\"\nurl = \"http://127.0.0.1:\(port)/hook\"\n"
        )
        #expect(errors.map(\.key) == ["service.proxy_url", "tenant.api_url", "sink.url"], "\(errors)")
        #expect(errors.map(\.line) == [2, 8, 12], "\(errors)")
        #expect(ProxySettings.parse("http://proxy.example:\(port)") == nil)
    }

    @Test func portsInTheirRangeAreTaken() {
        #expect(URLAuthority.port(of: "http://h:65535/x") == .valid(65535))
        #expect(URLAuthority.port(of: "http://u:p@[::1]:8080?q") == .valid(8080))
        #expect(URLAuthority.port(of: "http://[::1]/x") == .absent)
        #expect(URLAuthority.port(of: "https://h") == .absent)
        #expect(URLAuthority.port(of: "https://h:65536") == .invalid("65536"))
        #expect(ProxySettings.parse("http://proxy.example")?.port == 3128)
    }

    /// Credentials in a URL or a header of the plain configuration file are refused, and the
    /// message does not repeat them (issue 23, item 16).
    @Test func credentialsInURLsAndHeadersAreRefusedWithoutBeingRepeated() throws {
        let canary = "CANARY-in-url-7c1"
        let cases: [(String, String)] = [
            ("url = \"https://alice:\(canary)@siem.example/hook\"", "holds a user name or password"),
            ("url = \"https://siem.example/hook?token=\(canary)\"", "credential in its query (token=)"),
            ("url = \"https://siem.example/hook?a=1&api_key=\(canary)\"", "credential in its query (api_key=)"),
            ("url = \"https://siem.example/hook\"\nheaders = { \"X-Api-Key\" = \"\(canary)\" }", "carries a credential"),
            ("url = \"https://siem.example/hook\"\nheaders = { \"Cookie\" = \"s=\(canary)\" }", "carries a credential"),
            ("url = \"https://siem.example/hook\"\nheaders = { \"Proxy-Authorization\" = \"Basic \(canary)\" }", "carries a credential"),
            ("url = \"https://siem.example/hook\"\nheaders = { \"X-Tag\" = \"a\\r\\nX-Injected: \(canary)\" }", "line break"),
        ]
        for (line, problem) in cases {
            let errors = fixture.errors(ConfigFixture.tenant + "\n[[sink]]\nname = \"siem\"\ntype = \"http\"\n" + line + "\n")
            #expect(errors.count == 1 && errors[0].message.contains(problem), "\(line): \(errors)")
            // The line-break case shows the value escaped, so the canary may appear there; never raw.
            if problem != "line break" {
                #expect(!errors.description.contains(canary), "\(errors)")
            }
        }
        // A plain header is fine.
        let configuration = try fixture.load(
            ConfigFixture.tenant
                + "\n[[sink]]\nname = \"siem\"\ntype = \"http\"\nurl = \"https://siem.example/hook?tenant=a\"\nheaders = { \"X-Tag\" = \"defender\" }\n"
        )
        #expect(configuration.sinks.count == 1)
    }

    /// A file sink that would destroy data or leak it is refused (issue 11, hole 16): a sink at
    /// `state.sqlite` had its alerts overwritten by SQLite's checkpoint after they were confirmed.
    @Test(arguments: [
        ("state/state.sqlite", "inside the state directory"),
        ("state/../state/outbox/x.jsonl", "inside the state directory"),
        ("linked-state/alerts.jsonl", "inside the state directory"),
        ("defender-alertd.toml", "the configuration file"),
        ("./secret", "a secret file"),
    ])
    func aFileSinkPathThatDestroysDataIsRefused(path: String, phrase: String) throws {
        try FileManager.default.createDirectory(atPath: fixture.directory.file("state"), withIntermediateDirectories: true)
        try? FileManager.default.createSymbolicLink(
            atPath: fixture.directory.file("linked-state"), withDestinationPath: fixture.directory.file("state"))
        let error = try single(
            "[service]\nstate_directory = \"state\"\n" + ConfigFixture.tenant
                + "\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"\(path)\"\n")
        #expect(error.key == "sink.path")
        #expect(error.line == 11)
        #expect(error.message.contains(phrase), "\(error.message)")
    }

    @Test func twoFileSinksCannotShareAFile() throws {
        let error = try single(
            ConfigFixture.tenant + "\n[[sink]]\nname = \"a\"\ntype = \"file\"\npath = \"out/a.jsonl\"\n"
                + "[[sink]]\nname = \"b\"\ntype = \"file\"\npath = \"./out/x/../a.jsonl\"\n")
        #expect(error.key == "sink.path")
        #expect(error.message.contains("also the file of sink a"), "\(error.message)")
    }

    @Test func anUnknownSinkTypeListsTheKnownOnes() throws {
        let error = try single(ConfigFixture.tenant + "\n[[sink]]\nname = \"siem\"\ntype = \"kafka\"\n")
        #expect(error.key == "sink.type")
        #expect(error.message == "\"kafka\" is not one of: journal, stdout, file, syslog, http")
    }

    @Test func tablesOfTheWrongShape() throws {
        let errors = fixture.errors("service = 5\n[tenant]\nname = \"x\"\n" + ConfigFixture.sink)
        #expect(errors.map(\.key) == ["service", "tenant"])
        #expect(errors[1].message.contains("[[tenant]]"))
    }

    @Test func emptyFileNeedsTenantsAndSinks() throws {
        let errors = fixture.errors("")
        #expect(errors.map(\.message) == ["no [[tenant]] is configured; add at least one", "no [[sink]] is configured; add at least one"])
    }

    @Test func allProblemsAreReportedAtOnceInLineOrder() throws {
        let errors = fixture.errors(
            """
            [service]
            poll_interval = "soon"
            log_level = "loud"
            max_outbox = 0

            [[tenant]]
            name = "bad name!"
            tenant_id = "?"
            client_id = "nope"
            client_secret_file = "missing"
            lookback = 5

            [[sink]]
            name = "out"
            type = "stdout"
            format = "xml"
            colour = "red"
            """)
        #expect(errors.map(\.line) == [2, 3, 4, 7, 8, 9, 10, 11, 16, 17])
        #expect(errors.count == 10)
        let description = ConfigurationErrors(errors).description
        #expect(description.split(separator: "\n").allSatisfy { $0.hasPrefix("\(path):") })
    }
}

@Suite("Configuration: key locations")
struct KeyLocationTests {
    let fixture = ConfigFixture()

    @Test func multiLineValuesDoNotConfuseLineNumbers() throws {
        let errors = fixture.errors(
            """
            # a comment with key = value
            [service]
            state_directory = \"\"\"
            fake_key = 1
            [[tenant]]
            \"\"\"
            log_level = "info" # inline comment = here

            \(ConfigFixture.tenant)
            severity = [
              "High",   # comment
              "Bogus",
            ]
            "page_size" = -1
            \(ConfigFixture.sink)
            """)
        #expect(errors.map(\.key) == ["tenant.severity", "tenant.page_size"])
        #expect(errors.map(\.line) == [14, 18])
    }
}
