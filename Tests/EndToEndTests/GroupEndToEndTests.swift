import Foundation
import OrderedJSON
import TestSupport
import Testing

/// Daemons of a group on a real PostgreSQL (`make test` starts one), each a real process, with
/// one simulator per tenant (a simulator is one tenant): every alert is delivered; each tenant
/// is polled by one daemon at a time (each simulator records, from `User-Agent`, which daemon
/// sent each alerts request); the tenants spread evenly and rebalance when one joins or leaves.
@Suite(
    "A group of daemons on PostgreSQL", .serialized,
    .enabled(if: GroupHarness.postgres != nil, "no PostgreSQL server: run the tests through `make test` (scripts/with-postgres.sh)"))
struct GroupEndToEndTests {
    @Test func threeDaemonsShareTheTenantsAndAFourthJoiningAndOneLeavingRebalance() async throws {
        let siem = FakeSIEM()
        let group = try GroupHarness(tenants: 6)
        try await siem.serve { base throws in
            group.configure(sink: GroupHarness.hookSink(base), token: siem.token)
            var daemons = [try group.start(), try group.start(), try group.start()]
            let expected = try group.simulatorAlertIDs()
            let delivered = { GroupHarness.delivered(siem) }
            await group.waitUntil("every backlog alert delivered by three daemons", daemons: daemons) { Set(delivered()).isSuperset(of: expected) }
            await group.waitUntil("the tenants spread over three daemons, two each", daemons: daemons) {
                try group.currentPollers().values.sorted() == [2, 2, 2]
            }
            #expect(Set(try group.currentPollers().keys) == Set(daemons.map { group.member(of: $0) }))

            // A fourth joins: 2, 2, 1, 1.
            daemons.append(try group.start())
            await group.waitUntil("four daemons polling, 2, 2, 1 and 1 tenants", daemons: daemons) {
                try group.currentPollers().values.sorted() == [1, 1, 2, 2]
            }
            // One leaves (stopped gracefully): 2, 2, 2 again, at once (it released its leases).
            let leaving = daemons.remove(at: 1)
            leaving.signal(SIGTERM)
            #expect(await group.exitStatus(of: leaving, timeout: .seconds(60)) == 0, "\(leaving.stderr.suffix(2000))")
            #expect(leaving.stderr.contains("left the group"))
            await group.waitUntil("three daemons polling two tenants each again", daemons: daemons) {
                let now = try group.currentPollers()
                return now[group.member(of: leaving)] == nil && now.values.sorted() == [2, 2, 2]
            }

            // New alerts go on arriving; all of them come out.
            let later = try group.addAlerts(5)
            await group.waitUntil("the alerts added later delivered", daemons: daemons) { Set(delivered()).isSuperset(of: later) }
            let all = delivered()
            let duplicates = all.count - Set(all).count
            // Handed over between polls, no alert was in flight: nothing twice.
            #expect(duplicates == 0, "\(duplicates) alerts delivered twice")
            // At no moment two daemons polling one tenant: two would alternate at every poll
            // (a run of requests each); here a tenant changes hands at most once per change of
            // membership (two joins, a third, one leaving).
            for (tenant, runs) in try group.pollerRuns() {
                let members = runs.map(\.member)
                #expect(!members.contains(""), "tenant \(tenant): a request without a member name")
                #expect(runs.count <= 5, "tenant \(tenant) changed hands \(runs.count - 1) times: \(members)")
            }
            for daemon in daemons {
                daemon.signal(SIGTERM)
                #expect(await group.exitStatus(of: daemon, timeout: .seconds(60)) == 0, "\(daemon.stderr.suffix(2000))")
                #expect(!daemon.stderr.contains(ConfigFixture.canary))
                #expect(!daemon.stderr.contains(GroupHarness.postgres?.password ?? "-"))
            }
        }
    }
}

extension GroupEndToEndTests {
    /// A daemon killed (`kill -9`) loses its tenants when its leases run out; one stopped
    /// (`SIGSTOP`, as a partition looks) too, and once continued it sends nothing more for
    /// them (its lease's local deadline passed) and admits nothing (its epoch is old): it
    /// rejoins and gets a share again. Every alert is delivered.
    @Test func aDaemonKilledOrStoppedLosesItsTenantsAndNothingIsLost() async throws {
        let siem = FakeSIEM()
        let group = try GroupHarness(tenants: 6, rate: 60)
        try await siem.serve { base throws in
            group.configure(sink: GroupHarness.hookSink(base), token: siem.token)
            let delivered = { GroupHarness.delivered(siem) }
            var daemons = [try group.start(), try group.start(), try group.start()]
            await group.waitUntil("the tenants spread over three daemons", daemons: daemons) { try group.currentPollers().count == 3 }

            let killed = daemons.removeFirst()
            killed.signal(SIGKILL)
            _ = await group.exitStatus(of: killed, timeout: .seconds(10))
            await group.waitUntil("the killed daemon's tenants taken by the others", daemons: daemons) {
                let now = try group.currentPollers()
                return now.count == 2 && now[group.member(of: killed)] == nil
            }

            let stopped = daemons[0]
            stopped.signal(SIGSTOP)
            await group.waitUntil("the stopped daemon's tenants taken over", daemons: daemons) {
                let now = try group.currentPollers()
                return now.count == 1 && now[group.member(of: daemons[1])] == 6
            }
            stopped.signal(SIGCONT)
            await group.waitUntil("the continued daemon back with a share", daemons: daemons) { try group.currentPollers().count == 2 }
            #expect(stopped.stderr.contains("leases lost"), "\(stopped.stderr.suffix(3000))")

            let expected = try group.simulatorAlertIDs()
            await group.waitUntil("every alert delivered", daemons: daemons) { Set(delivered()).isSuperset(of: expected) }
            let all = delivered()
            // Only what was in flight at a cut can come twice: a batch of one sink.
            #expect(all.count - Set(all).count <= 500, "\(all.count - Set(all).count) alerts delivered twice")
            for (tenant, runs) in try group.pollerRuns() {
                // Three spreads, a kill, a stop, a return: a handful of hand-overs, never the
                // alternation two daemons polling together would make at every poll.
                #expect(runs.count <= 8, "tenant \(tenant) changed hands \(runs.count - 1) times: \(runs.map(\.member))")
            }
            for daemon in daemons {
                daemon.signal(SIGTERM)
                #expect(await group.exitStatus(of: daemon, timeout: .seconds(60)) == 0, "\(daemon.stderr.suffix(2000))")
            }
        }
    }

    /// A wrong password is not "the server cannot be reached" for a minute: the daemon stops
    /// at once with the server's reason, and never shows the password.
    @Test func aWrongPasswordStopsTheDaemonWithTheServersReason() async throws {
        let group = try GroupHarness(tenants: 1)
        group.configure(sink: ConfigFixture.sink, token: "unused")
        group.fixture.directory.write("pg-password", "not-the-password-7f3e\n", mode: 0o600)
        let daemon = try DaemonProcess(["run", "--config", group.fixture.directory.file("defender-alertd.toml"), "--log-target", "stderr"])
        let status = await group.exitStatus(of: daemon, timeout: .seconds(30))
        #expect(status != nil && status != 0, "\(daemon.stderr.suffix(2000))")
        #expect(daemon.stderr.contains("password authentication failed"), "\(daemon.stderr.suffix(2000))")
        #expect(!daemon.stderr.contains("not-the-password-7f3e"))
    }

    /// A daemon alone moves its state into PostgreSQL (`state migrate`) and a group goes on
    /// from it: what was delivered is not delivered again, what was queued is delivered, and
    /// the old directory is refused to a daemon.
    @Test func aStateMovedIntoPostgreSQLIsWhereTheGroupGoesOnFrom() async throws {
        let siem = FakeSIEM()
        let group = try GroupHarness(tenants: 2)
        try await siem.serve { base throws in
            group.configure(sink: GroupHarness.hookSink(base), token: siem.token, group: false)
            let alone = try group.start()
            let backlog = try group.simulatorAlertIDs()
            await group.waitUntil("the backlog delivered by a daemon alone", daemons: [alone]) {
                Set(GroupHarness.delivered(siem)).isSuperset(of: backlog)
            }
            alone.signal(SIGTERM)
            #expect(await group.exitStatus(of: alone) == 0)
            group.configure(sink: GroupHarness.hookSink(base), token: siem.token)
            let config = group.fixture.directory.file("defender-alertd.toml")
            // --to is a check: another database than state_database is refused, nothing moved.
            let elsewhere = try DaemonProcess.run(["state", "migrate", "--config", config, "--to", "postgresql://alertd@db.example/other"])
            #expect(elsewhere.status != 0 && elsewhere.stderr.contains("--to names another database than state_database"), "\(elsewhere.stderr)")
            let server = try #require(GroupHarness.postgres)
            let target = String(server.url[..<server.url.lastIndex(of: "/")!]) + "/\(group.database)"
            let moved = try DaemonProcess.run(["state", "migrate", "--config", config, "--to", target])
            #expect(moved.status == 0, "\(moved.stderr)")
            #expect(moved.stdout.contains("moved 2 tenants' watermarks, 40 dedup keys"), "\(moved.stdout)")
            let later = try group.addAlerts(3)
            let daemons = [try group.start(), try group.start()]
            await group.waitUntil("the alerts added later delivered by the group", daemons: daemons) {
                Set(GroupHarness.delivered(siem)).isSuperset(of: later)
            }
            let all = GroupHarness.delivered(siem)
            #expect(all.count == Set(all).count, "\(all.count - Set(all).count) alerts delivered twice")
            #expect(Set(all) == backlog.union(later))
            for daemon in daemons {
                daemon.signal(SIGTERM)
                #expect(await group.exitStatus(of: daemon) == 0)
            }
            // The directory moved is refused to a daemon alone.
            group.configure(sink: GroupHarness.hookSink(base), token: siem.token, group: false)
            let stale = try DaemonProcess(["run", "--config", config, "--log-target", "stderr"])
            #expect(await group.exitStatus(of: stale, timeout: .seconds(30)) != 0)
            #expect(stale.stderr.contains("MOVED-TO-POSTGRESQL"), "\(stale.stderr.suffix(2000))")
        }
    }

    /// `state show` reads the group's state in PostgreSQL, beside running daemons.
    @Test func stateShowReadsTheGroupsState() async throws {
        let siem = FakeSIEM()
        let group = try GroupHarness(tenants: 2)
        try await siem.serve { base throws in
            group.configure(sink: GroupHarness.hookSink(base), token: siem.token)
            let daemon = try group.start()
            await group.waitUntil("the backlog delivered", daemons: [daemon]) {
                siem.hookBodies.reduce(0) { $0 + $1.split(separator: UInt8(ascii: "\n")).count } >= 40
            }
            let shown = try DaemonProcess.run(["state", "show", "--config", group.fixture.directory.file("defender-alertd.toml")])
            #expect(shown.status == 0, "\(shown.stderr)")
            #expect(shown.stdout.contains("tenant t1: watermark 20") && shown.stdout.contains("tenant t2: watermark 20"), "\(shown.stdout)")
            #expect(shown.stdout.contains("20 dedup keys"), "\(shown.stdout)")
            #expect(shown.stdout.contains("storage seen: 40 rows, "), "\(shown.stdout)")
            daemon.signal(SIGTERM)
            #expect(await group.exitStatus(of: daemon, timeout: .seconds(60)) == 0)
        }
    }
}

/// A group's daemons, its PostgreSQL database (a new one per harness) and one simulator per
/// tenant, all real processes on loopback.
extension GroupEndToEndTests {
    /// A signed-in user's tenant in a group: `login` stores the refresh token in PostgreSQL,
    /// sealed; the member holding the tenant redeems it and stores each rotated one there, so
    /// a member taking over after a `kill -9` goes on with the latest (no rotated token is
    /// redeemed twice) and nobody has to sign in again.
    @Test func aSignedInUsersTenantMovesWithItsRefreshToken() async throws {
        let siem = FakeSIEM()
        let group = try GroupHarness(tenants: 1, rate: 60)
        let simulator = group.simulators[0]
        let client = "0a6e9f2c-51d4-4c7e-9b8a-3f2e1d0c9b8a"
        @Sendable func control(_ method: String, _ path: String, _ body: String? = nil) throws -> String {
            try DaemonProcess.curl(
                ["-s", "--max-time", "30", "-X", method, "-H", "Content-Type: application/json"] + (body.map { ["-d", $0] } ?? [])
                    + ["\(simulator.base)/_simulator/\(path)"]
            ).stdout
        }
        @Sendable func counter(_ name: String) throws -> Int {
            (try JSONSerialization.jsonObject(with: Data(try control("GET", "counters").utf8)) as? [String: Any])?[name] as? Int ?? -1
        }
        _ = try control("POST", "apps", #"{"tenantId": "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35", "clientId": "\#(client)", "isPublicClient": true}"#)
        _ = try control("POST", "users", #"{"userPrincipalName": "analyst@contoso.com", "deviceGroups": ["Servers-Tier0", "Finance-Workstations"]}"#)
        try await siem.serve { base throws in
            group.configure(sink: GroupHarness.hookSink(base), token: siem.token, delegatedClient: client)
            let config = group.fixture.directory.file("defender-alertd.toml")
            let login = try DaemonProcess(["login", "--tenant", "t1", "--config", config])
            let prompt = try #require(login.waitForLine(startingWith: "To sign in, use a web browser"), "\(login.stdout) \(login.stderr)")
            let code = try #require(prompt.firstMatch(of: /enter the code (\S+) to authenticate/).map { String($0.1) })
            _ = try control("POST", "devicecode/approve", #"{"userCode": "\#(code)", "userPrincipalName": "analyst@contoso.com"}"#)
            #expect(await group.exitStatus(of: login) == 0, "\(login.stdout) \(login.stderr)")
            #expect(login.stdout.contains("stored in PostgreSQL (user_token, tenant t1) (sealed with the token key)"), "\(login.stdout)")
            // In the database: sealed, never the token itself.
            let stored = try group.psql("SELECT encode(sealed, 'escape') FROM user_token WHERE tenant = 't1'")
            #expect(stored.contains("DAT-SEALED-1") && !stored.contains(UserContextTests.refreshTokenPrefix), "\(stored)")

            let first = try group.start()
            await group.waitUntil("the first member polls as the user", daemons: [first]) { first.stderr.contains("poll complete") }
            let redeemed = try counter("refreshTokensRedeemed")
            _ = try control("POST", "tokens/revoke")  // its next poll renews: a rotation, stored in PostgreSQL
            await group.waitUntil("a renewal by the first member", daemons: [first]) { try counter("refreshTokensRedeemed") > redeemed }
            first.signal(SIGKILL)
            _ = await group.exitStatus(of: first)

            let second = try group.start()
            let before = try counter("refreshTokensRedeemed")
            _ = try control("POST", "tokens/revoke")
            await group.waitUntil("a renewal by the member that took over", daemons: [second]) { try counter("refreshTokensRedeemed") > before }
            // Everything the user may see so far (the backlog and what arrived since) is delivered.
            let visible = try group.visibleAlertIDs(deviceGroups: ["Servers-Tier0", "Finance-Workstations"])
            #expect(!visible.isEmpty)
            await group.waitUntil("the user's alerts delivered after the takeover", daemons: [second]) {
                Set(GroupHarness.delivered(siem)).isSuperset(of: visible)
            }
            #expect(try counter("refreshTokensReused") == 0, "a rotated refresh token was redeemed again")
            #expect(!second.stderr.contains("sign-in needed"), "\(second.stderr.suffix(2000))")
            second.signal(SIGTERM)
            #expect(await group.exitStatus(of: second) == 0)
            for output in [first.stderr, second.stderr, login.stdout, login.stderr] {
                #expect(!output.contains(UserContextTests.refreshTokenPrefix) && !output.contains("CANARY-group-token-key-41ab"))
            }
            // logout deletes it from the database.
            let logout = try DaemonProcess.run(["logout", "--tenant", "t1", "--config", config])
            #expect(logout.status == 0 && logout.stdout.contains("is deleted"), "\(logout.stdout) \(logout.stderr)")
            #expect(try group.psql("SELECT count(*) FROM user_token").trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        }
    }
}

final class GroupHarness: @unchecked Sendable {
    // @unchecked: each test owns its harness and uses it from one task.
    struct Server {
        var url: String
        var password: String
        var passwordFile: String
        var bin: String
    }

    /// The test server `scripts/with-postgres.sh` started, if any.
    static let postgres: Server? = {
        let environment = ProcessInfo.processInfo.environment
        guard let url = environment["DEFENDER_TEST_POSTGRES_URL"], let file = environment["DEFENDER_TEST_POSTGRES_PASSWORD_FILE"],
            let bin = environment["DEFENDER_TEST_POSTGRES_BIN"],
            let password = try? String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        else { return nil }
        return Server(url: url, password: password, passwordFile: file, bin: bin)
    }()

    let fixture = ConfigFixture()
    let simulators: [(name: String, process: DaemonProcess, base: String)]
    let database: String

    /// An ndjson sink to the fake SIEM's webhook at `base`.
    static func hookSink(_ base: String) -> String {
        """
        [[sink]]
        name = "hook"
        type = "http"
        url = "\(base)/hook"
        format = "ndjson"
        token_file = "token"
        flush_interval = "200ms"
        """
    }

    /// The ids of the alerts the webhook received, repeats included.
    static func delivered(_ siem: FakeSIEM) -> [String] {
        siem.hookBodies.flatMap { String(decoding: $0, as: UTF8.self).split(separator: "\n") }
            .compactMap { try? JSONValue(parsing: String($0))["id"]?.stringValue }
    }

    init(tenants: Int, rate: Int = 0) throws {
        let server = try #require(Self.postgres)
        database = "g_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        let created = try runToCompletion(
            server.bin + "/psql", [server.url, "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE \(database)"],
            environment: ["PGPASSWORD": server.password, "PATH": "/usr/bin:/bin"])
        #expect(created.status == 0, "\(created.stderr)")
        simulators = try (1...tenants).map { index in
            let process = try DaemonProcess(
                [
                    "--port", "0", "--client-secret", ConfigFixture.canary, "--seed", "\(index)", "--backlog", "20",
                    "--backlog-span", "3600", "--rate", "\(rate)",
                    "--rate-limit-per-minute", "100000", "--rate-limit-per-hour", "10000000",
                ],
                executable: "defender-sim")
            let base = try #require(process.waitForLine(startingWith: "listening "), "\(process.stderr)")
            return ("t\(index)", process, base)
        }
    }

    deinit {
        for simulator in simulators { simulator.process.signal(SIGKILL) }
        if let server = Self.postgres {
            _ = try? runToCompletion(
                server.bin + "/psql", [server.url, "-c", "DROP DATABASE IF EXISTS \(database) WITH (FORCE)"],
                environment: ["PGPASSWORD": server.password, "PATH": "/usr/bin:/bin"])
        }
    }

    /// One configuration for every daemon: the tenants, the group's database (unless
    /// `group` is false: then the state is in `state_directory`), `sink`.
    /// With `delegatedClient`, every tenant signs in as a person through that public client
    /// (`auth = "delegated"`), its refresh token sealed with `token-key`.
    func configure(sink: String, token: String, group: Bool = true, delegatedClient: String? = nil) {
        let server = Self.postgres!
        let url = String(server.url[..<server.url.lastIndex(of: "/")!]) + "/\(database)"
        fixture.directory.write("token", token + "\n", mode: 0o600)
        fixture.directory.write("pg-password", server.password + "\n", mode: 0o600)
        fixture.directory.write("token-key", "CANARY-group-token-key-41ab", mode: 0o600)
        let tenants = simulators.map { simulator in
            var tenant = ConfigFixture.tenant.replacingOccurrences(of: "name = \"contoso\"", with: "name = \"\(simulator.name)\"")
            if let delegatedClient {
                tenant = tenant.replacingOccurrences(
                    of: "client_id = \"9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c\"\nclient_secret_file = \"secret\"",
                    with: "client_id = \"\(delegatedClient)\"\nauth = \"delegated\"")
            }
            return tenant + """

                api_url = "\(simulator.base)"
                login_url = "\(simulator.base)"
                lookback = "1d"
                overlap = "10m"
                """
        }.joined(separator: "\n\n")
        fixture.writeConfiguration(
            """
            [service]
            poll_interval = "1s"
            state_directory = "state"
            token_key_file = "token-key"
            \(group ? "lease_ttl = \"3s\"\nstate_database = \"\(url)\"\nstate_database_password_file = \"pg-password\"" : "")

            \(tenants)

            \(sink)
            """)
    }

    /// Starts one more daemon of the group; waits for READY=1. Its notify socket is closed
    /// then: a socket nobody reads fills up, and `sd_notify` blocks on a full one.
    func start() throws -> DaemonProcess {
        let socket = NotifySocket()
        let daemon = try DaemonProcess(
            ["run", "--config", fixture.directory.file("defender-alertd.toml"), "--log-target", "stderr"],
            environment: ["NOTIFY_SOCKET": socket.address])
        let ready = socket.receive(until: { $0.contains("READY=1") }, timeout: .seconds(60))
        #expect(ready.matched != nil, "no READY=1: \(daemon.stderr)")
        return daemon
    }

    /// The member name a daemon has by default: the host name and its process id.
    func member(of daemon: DaemonProcess) -> String {
        "\(ProcessInfo.processInfo.hostName)-\(daemon.pid)"
    }

    /// One statement on the group's database, its rows as psql prints them unaligned.
    func psql(_ sql: String) throws -> String {
        let server = try #require(Self.postgres)
        let url = String(server.url[..<server.url.lastIndex(of: "/")!]) + "/\(database)"
        let result = try runToCompletion(
            server.bin + "/psql", [url, "-X", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql],
            environment: ["PGPASSWORD": server.password, "PATH": "/usr/bin:/bin"])
        #expect(result.status == 0, "\(result.stderr)")
        return result.stdout
    }

    /// The ids of the simulators' alerts in `deviceGroups` (what a signed-in user limited to
    /// them sees).
    func visibleAlertIDs(deviceGroups: Set<String>) throws -> Set<String> {
        var ids = Set<String>()
        for simulator in simulators {
            let body = try DaemonProcess.curl(["-s", "--max-time", "30", "\(simulator.base)/_simulator/alerts"]).stdout
            guard case .array(let alerts)? = try JSONValue(parsing: body)["value"] else { continue }
            for alert in alerts where deviceGroups.contains(alert["rbacGroupName"]?.stringValue ?? "") {
                if let id = alert["id"]?.stringValue { ids.insert(id) }
            }
        }
        return ids
    }

    /// Every alert id the simulators hold.
    func simulatorAlertIDs() throws -> Set<String> {
        var ids = Set<String>()
        for simulator in simulators {
            let body = try DaemonProcess.curl(["-s", "--max-time", "30", "\(simulator.base)/_simulator/alerts"]).stdout
            guard case .array(let alerts)? = try JSONValue(parsing: body)["value"] else { continue }
            for alert in alerts { if let id = alert["id"]?.stringValue { ids.insert(id) } }
        }
        return ids
    }

    /// Adds `count` alerts to each simulator; their ids.
    func addAlerts(_ count: Int) throws -> Set<String> {
        var ids = Set<String>()
        for simulator in simulators {
            let body = try DaemonProcess.curl([
                "-s", "--max-time", "30", "-X", "POST", "-H", "Content-Type: application/json",
                "-d", #"{"count": \#(count)}"#, "\(simulator.base)/_simulator/alerts",
            ]).stdout
            guard case .array(let added)? = try JSONValue(parsing: body)["ids"] else { continue }
            for id in added { if let id = id.stringValue { ids.insert(id) } }
        }
        return ids
    }

    struct Run: Decodable {
        var member: String
        var requests: Int
    }

    /// Per tenant, the runs of alerts requests by member, oldest first.
    func pollerRuns() throws -> [String: [Run]] {
        var runs: [String: [Run]] = [:]
        for simulator in simulators {
            let body = try DaemonProcess.curl(["-s", "--max-time", "30", "\(simulator.base)/_simulator/pollers"]).stdout
            struct Answer: Decodable { var runs: [Run] }
            runs[simulator.name] = try JSONDecoder().decode(Answer.self, from: Data(body.utf8)).runs
        }
        return runs
    }

    /// Member → how many tenants it polls now (the member of each tenant's latest run, once
    /// that run has at least two requests: a member that polls, not one that just lost it).
    func currentPollers() throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for (_, runs) in try pollerRuns() {
            guard let last = runs.last, last.requests >= 2 else { continue }
            counts[last.member, default: 0] += 1
        }
        return counts.values.reduce(0, +) == simulators.count ? counts : [:]
    }

    /// Waits (bounded) until `condition` holds; records an issue with the daemons' logs when it
    /// never does. It sleeps as a task, never blocking a thread of the pool the other tests
    /// (and the fake SIEM) run on.
    func waitUntil(
        _ what: String, daemons: [DaemonProcess], timeout: Duration = .seconds(90), _ condition: () throws -> Bool,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? condition()) == true { return }
            try? await Task.sleep(for: .milliseconds(200))  // waiting for other processes, not a timing assumption
        }
        Issue.record("timed out waiting until \(what); logs: \(daemons.map { $0.stderr.suffix(1500) })", sourceLocation: sourceLocation)
    }

    /// The daemon's exit status once it ended, or nil after `timeout`; as a task.
    func exitStatus(of daemon: DaemonProcess, timeout: Duration = .seconds(60)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while daemon.process.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        return daemon.process.isRunning ? nil : daemon.process.terminationStatus
    }
}
