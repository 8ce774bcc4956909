import Foundation
import TestSupport
import Testing

/// `auth = "delegated"` end to end: `login` signs a person in against the simulator process
/// (approved through its control API), the daemon polls with the person's tokens across
/// several renewals, and a revoked sign-in stops it with the fix in its log and `STATUS=`. No
/// refresh token (every one the simulator issues begins with `0.SIMRT.`) shows in any output.
@Suite("User context end to end")
struct UserContextTests {
    static let publicClient = "0a6e9f2c-51d4-4c7e-9b8a-3f2e1d0c9b8a"
    static let refreshTokenPrefix = "0.SIMRT."

    /// The simulator with the public client app and a user who may see `Servers-Tier0` only; a
    /// configuration whose tenant signs in as that user, writing into file sink `a`.
    static func harness(backlog: Int = 40) throws -> PipelineHarness {
        let harness = try PipelineHarness(simulatorArguments: ["--backlog", String(backlog), "--backlog-span", "3600"])
        try harness.control(
            "POST", "apps", #"{"tenantId": "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35", "clientId": "\#(publicClient)", "isPublicClient": true}"#)
        try harness.control("POST", "users", #"{"userPrincipalName": "analyst@contoso.com", "deviceGroups": ["Servers-Tier0"]}"#)
        harness.fixture.directory.write("token-key", "CANARY-token-key-7c1d", mode: 0o600)
        harness.fixture.writeConfiguration(
            """
            [service]
            poll_interval = "1s"
            log_level = "debug"
            token_key_file = "token-key"

            [[tenant]]
            name = "contoso"
            tenant_id = "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35"
            client_id = "\(publicClient)"
            auth = "delegated"
            api_url = "\(harness.base)"
            login_url = "\(harness.base)"
            lookback = "1d"

            \(PipelineHarness.fileSink("a"))
            """)
        return harness
    }

    /// How many of the simulator's alerts belong to Servers-Tier0 (all the analyst may see).
    static func serverAlerts(_ harness: PipelineHarness) throws -> Int {
        let object = try JSONSerialization.jsonObject(with: Data(try harness.control("GET", "alerts").utf8)) as? [String: Any]
        return (object?["value"] as? [[String: Any]] ?? []).filter { $0["rbacGroupName"] as? String == "Servers-Tier0" }.count
    }

    /// Runs `login`, approving the code it prints as the analyst.
    static func login(_ harness: PipelineHarness) throws -> DaemonProcess {
        let login = try DaemonProcess(["login", "--tenant", "contoso", "--config", harness.fixture.directory.file("defender-alertd.toml")])
        let prompt = try #require(login.waitForLine(startingWith: "To sign in, use a web browser"), "\(login.stdout) \(login.stderr)")
        let code = try #require(prompt.firstMatch(of: /enter the code (\S+) to authenticate/).map { String($0.1) })
        try harness.control("POST", "devicecode/approve", #"{"userCode": "\#(code)", "userPrincipalName": "analyst@contoso.com"}"#)
        #expect(login.waitForExit(timeout: .seconds(60)) == 0, "\(login.stdout) \(login.stderr)")
        return login
    }

    @Test func aSignedInUserIsPolledAcrossRenewalsAndARevocationSaysWhatToRun() throws {
        let harness = try Self.harness()
        let login = try Self.login(harness)
        #expect(login.stdout.contains("Signed in as analyst@contoso.com with https://api.securitycenter.microsoft.com/Alert.Read"), "\(login.stdout)")
        let stored = harness.fixture.directory.file("state/user-tokens/contoso.token")
        let sealed = String(decoding: FileManager.default.contents(atPath: stored) ?? Data(), as: UTF8.self)
        #expect(sealed.hasPrefix("DAT-SEALED-1") && !sealed.contains(Self.refreshTokenPrefix))

        // The daemon reads what the analyst may see: the alerts of Servers-Tier0, every one of them.
        #expect(try Self.serverAlerts(harness) < harness.simulatorAlerts().count)
        let daemon = try harness.startDaemon()
        harness.waitUntil("the analyst's alerts arrive") { !harness.delivered().isEmpty }
        // Renewals: each revocation of the access tokens makes the daemon redeem the refresh
        // token again and store the rotated one.
        for round in 1...3 {
            try harness.control("POST", "tokens/revoke")
            try harness.control("POST", "alerts", #"{"count": 6}"#)
            try harness.waitUntil("renewal \(round)") { try harness.counter("refreshTokensRedeemed") >= round }
        }
        try harness.waitUntil("every alert of Servers-Tier0 arrives") { harness.delivered().count == (try Self.serverAlerts(harness)) }
        #expect(try harness.counter("refreshTokensReused") == 0, "a rotated refresh token was not kept")
        let records = harness.deliveredAlerts()
        #expect(!records.isEmpty && records.allSatisfy { $0.alert["rbacGroupName"] as? String == "Servers-Tier0" })

        // Revoked: the next renewal fails for good, with the command in the log and STATUS=.
        try harness.control("POST", "users/revoke", #"{"userPrincipalName": "analyst@contoso.com"}"#)
        try harness.control("POST", "tokens/revoke")
        harness.waitUntil("the refusal is logged") { daemon.stderr.contains("sign-in needed, run `defender-alertd login --tenant contoso`") }
        let status = harness.socket.receive(
            until: { $0.contains("sign-in needed, run `defender-alertd login --tenant contoso`") }, timeout: .seconds(30))
        #expect(status.matched != nil, "\(status.all.suffix(2))")
        // And Entra ID is not asked again with the refused token, poll after poll.
        let asked = try harness.requests("token_v2", status: 400)
        // Logged when it starts, then at most hourly: the later polls say it at debug level only
        // ("poll failed again: sign-in still needed"); before issue 23, an error line a poll.
        harness.waitUntil("the poll's failure is logged") { daemon.stderr.contains("poll failed: ") }
        let said = daemon.stderr.components(separatedBy: "sign-in needed, run").count
        let polls = daemon.stderr.components(separatedBy: "poll failed").count
        harness.waitUntil("three more polls") { daemon.stderr.components(separatedBy: "poll failed").count >= polls + 3 }
        #expect(try harness.requests("token_v2", status: 400) == asked)
        #expect(daemon.stderr.components(separatedBy: "sign-in needed, run").count == said, "\(daemon.stderr.suffix(2000))")
        #expect(daemon.stderr.contains("sign-in still needed"))

        // A new sign-in is picked up without a restart, at once (no back-off to wait out).
        try harness.control("POST", "users", #"{"userPrincipalName": "analyst@contoso.com", "deviceGroups": ["Servers-Tier0"]}"#)
        let redeemed = try harness.counter("refreshTokensRedeemed")
        _ = try Self.login(harness)
        try harness.waitUntil("the new sign-in is used", timeout: .seconds(20)) { try harness.counter("refreshTokensRedeemed") > redeemed }
        try harness.control("POST", "alerts", #"{"count": 12}"#)
        try harness.waitUntil("polling resumes: every alert of Servers-Tier0 arrives") {
            harness.delivered().count == (try Self.serverAlerts(harness))
        }
        #expect(daemon.stderr.contains("signed in again"))
        harness.stopDaemon()
        // No refresh token anywhere: the daemon's and login's output, the state directory.
        #expect(!daemon.stderr.contains(Self.refreshTokenPrefix) && !login.stdout.contains(Self.refreshTokenPrefix))
        #expect(!daemon.stderr.contains("CANARY-token-key-7c1d"))
    }

    /// `login` against a hostile device code answer (the simulator told through its control
    /// API): terminal escapes, a disguised hyperlink, a right-to-left override, a page that is not
    /// Microsoft's. What it prints is printable, bounded, and warns about the page; before issue 23
    /// the message went to the terminal raw.
    @Test func loginShowsAHostileAnswerAsPrintableTextAndWarnsAboutAForeignPage() throws {
        let harness = try Self.harness(backlog: 0)
        // (A 2 MB message is tested in-process: a command-line argument is limited to 128 KiB.)
        let message =
            "To sign in, open \u{1B}]8;;https://evil.example/\u{07}https://microsoft.com/devicelogin\u{1B}]8;;\u{07} and enter {code}.\u{1B}[2J"
            + String(repeating: "\u{202E}padding", count: 5_000)
        let body = String(
            decoding: try JSONSerialization.data(withJSONObject: [
                "message": message, "verificationUri": "https://microsoft.com.evil.example/devicelogin",
            ]),
            as: UTF8.self)
        try harness.control("POST", "devicecode/answer", body)
        let login = try DaemonProcess(["login", "--tenant", "contoso", "--config", harness.fixture.directory.file("defender-alertd.toml")])
        #expect(
            login.waitForLine(
                startingWith: "Warning: the sign-in page in this answer, https://microsoft.com.evil.example/devicelogin, is not Microsoft's") != nil,
            "\(login.stdout.prefix(600)) \(login.stderr)")
        let restated = try #require(login.waitForLine(startingWith: "Sign-in page: "), "\(login.stdout.prefix(2000))")
        let code = try #require(restated.firstMatch(of: /Code: (\S+)/).map { String($0.1) })
        try harness.control("POST", "devicecode/approve", #"{"userCode": "\#(code)", "userPrincipalName": "analyst@contoso.com"}"#)
        #expect(login.waitForExit(timeout: .seconds(60)) == 0, "\(login.stdout.prefix(2000)) \(login.stderr)")
        let output = login.stdout
        #expect(!output.unicodeScalars.contains("\u{1B}") && !output.unicodeScalars.contains("\u{202E}") && !output.unicodeScalars.contains("\u{07}"))
        #expect(output.utf8.count < 4_000, "\(output.utf8.count) bytes")
        #expect(output.components(separatedBy: "Signed in as").count == 2)
    }

    @Test func killedDuringRotationsItAlwaysKeepsAUsableToken() throws {
        let harness = try Self.harness(backlog: 0)
        _ = try Self.login(harness)
        var generator = SystemRandomNumberGenerator()
        for round in 1...8 {
            let daemon = try harness.startDaemon()
            try harness.control("POST", "tokens/revoke")  // the next poll renews: a rotation
            try harness.control("POST", "alerts", #"{"count": 1}"#)
            // kill -9 somewhere in or around the renewal and its store.
            Thread.sleep(forTimeInterval: Double.random(in: 0.9...1.6, using: &generator))  // a moment in the poll cycle, not a timing assumption
            daemon.signal(SIGKILL)
            _ = daemon.waitForExit(timeout: .seconds(30))
            harness.daemon = nil
            #expect(!daemon.stderr.contains("sign-in needed"), "round \(round): \(daemon.stderr.suffix(1500))")
        }
        // Whatever moment each kill hit, the token stored is usable.
        let redeemed = try harness.counter("refreshTokensRedeemed")
        let daemon = try harness.startDaemon()
        try harness.waitUntil("a renewal after the kills") { try harness.counter("refreshTokensRedeemed") > redeemed }
        harness.waitUntil("a poll completes") { daemon.stderr.contains("poll complete") }
        #expect(!daemon.stderr.contains("sign-in needed"))
        harness.stopDaemon()
    }

    @Test func aLoginOutsideTheServiceIsSealedByTheDaemonWithItsCredential() throws {
        let harness = try Self.harness(backlog: 2)
        // The key as a systemd credential: present for the service, absent for the administrator's login.
        let config = harness.fixture.directory.file("defender-alertd.toml")
        let text = try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(
            of: #"token_key_file = "token-key""#, with: #"token_key_credential = "token-key""#)
        harness.fixture.writeConfiguration(text)
        harness.fixture.directory.write("credentials/token-key", "CANARY-token-key-7c1d", mode: 0o600)
        let login = try Self.login(harness)
        #expect(login.stdout.contains("not sealed yet"), "\(login.stdout)")
        let stored = harness.fixture.directory.file("state/user-tokens/contoso.token")
        #expect(String(decoding: FileManager.default.contents(atPath: stored) ?? Data(), as: UTF8.self).hasPrefix("DAT-PLAIN-1"))
        let daemon = try harness.startDaemon(environment: ["CREDENTIALS_DIRECTORY": harness.fixture.directory.file("credentials")])
        harness.waitUntil("the token is sealed at the first renewal") {
            String(decoding: FileManager.default.contents(atPath: stored) ?? Data(), as: UTF8.self).hasPrefix("DAT-SEALED-1")
        }
        harness.stopDaemon()
        #expect(!daemon.stderr.contains(Self.refreshTokenPrefix))
    }

    @Test func logoutDeletesTheTokenAndLoginRefusesAnApplicationTenant() throws {
        let harness = try Self.harness(backlog: 0)
        _ = try Self.login(harness)
        let config = harness.fixture.directory.file("defender-alertd.toml")
        let logout = try DaemonProcess.run(["logout", "--tenant", "contoso", "--config", config])
        #expect(logout.status == 0 && logout.stdout.contains("The refresh token of contoso is deleted"), "\(logout.stdout)")
        #expect(!FileManager.default.fileExists(atPath: harness.fixture.directory.file("state/user-tokens/contoso.token")))
        let testAuth = try DaemonProcess.run(["test-auth", "--config", config])
        #expect(
            testAuth.status == 1 && testAuth.stdout.contains("nobody has signed in")
                && testAuth.stdout.contains("defender-alertd login --tenant contoso"),
            "\(testAuth.stdout)")

        harness.configure()  // the fixture's tenant: auth = "application"
        let refused = try DaemonProcess.run(["login", "--tenant", "contoso", "--config", config])
        #expect(refused.status == 78 && refused.stderr.contains("login is for auth = \"delegated\""), "\(refused.stderr)")
    }

    @Test func testAuthShowsTheSignedInUserTheirPermissionsAndTheDeviceGroupCaveat() throws {
        let harness = try Self.harness(backlog: 3)
        _ = try Self.login(harness)
        let result = try DaemonProcess.run(["test-auth", "--config", harness.fixture.directory.file("defender-alertd.toml")])
        #expect(result.status == 0, "\(result.stdout)")
        #expect(
            result.stdout.contains(
                "[ok] permissions: signed in as analyst@contoso.com; delegated permissions: Alert.Read; alerts are those of the device groups this user may see"
            ),
            "\(result.stdout)")
        #expect(!result.stdout.contains(Self.refreshTokenPrefix))
    }
}
