import Foundation
import TestSupport
import Testing

/// The daemon as systemd runs it: a real process, a real notify socket, real signals.
@Suite("Daemon lifecycle under a notify socket")
struct LifecycleTests {
    let fixture = ConfigFixture()
    let socket = NotifySocket()

    /// A tenant whose hosts are a closed loopback port: the daemon never leaves the machine.
    static let offlineTenant = ConfigFixture.tenant + "\napi_url = \"http://127.0.0.1:9\"\nlogin_url = \"http://127.0.0.1:9\""

    func startDaemon(logLevel: String = "info") throws -> DaemonProcess {
        let config = fixture.writeConfiguration("[service]\nlog_level = \"\(logLevel)\"\n" + Self.offlineTenant + "\n" + ConfigFixture.sink)
        return try DaemonProcess(
            ["run", "--config", config, "--log-target", "stderr"],
            environment: ["NOTIFY_SOCKET": socket.address, "WATCHDOG_USEC": "1000000"]
        )
    }

    /// Waits (bounded) for a datagram containing `text`.
    func expectMessage(_ text: String, _ daemon: DaemonProcess, sourceLocation: SourceLocation = #_sourceLocation) -> [String] {
        let result = socket.receive(until: { $0.contains(text) }, timeout: .seconds(30))
        #expect(result.matched != nil, "no \(text) from the daemon; got \(result.all); stderr: \(daemon.stderr)", sourceLocation: sourceLocation)
        return result.all
    }

    @Test func readyWatchdogReloadAndCleanStop() throws {
        let daemon = try startDaemon(logLevel: "trace")

        let startup = expectMessage("READY=1", daemon)
        #expect(!startup.contains { $0.contains("STOPPING=1") })
        // The watchdog is pinged regularly (WATCHDOG_USEC=1s: every 0.5s): wait for two more.
        var pings = startup
        for _ in 0..<2 { pings += socket.receive(until: { $0 == "WATCHDOG=1" }, timeout: .seconds(30)).all }
        #expect(pings.filter { $0 == "WATCHDOG=1" }.count >= 2, "\(pings)")
        #expect(pings.contains { $0.hasPrefix("STATUS=1 tenant (contoso), 1 sink (journal)") })

        // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
        daemon.signal(SIGHUP)
        let reload = expectMessage("RELOADING=1", daemon)
        let reloading = try #require(reload.last)
        let usec = reloading.split(separator: "\n").first { $0.hasPrefix("MONOTONIC_USEC=") }.flatMap { UInt64($0.dropFirst(15)) }
        #expect(usec != nil && usec! > 0, "\(reloading)")
        _ = expectMessage("READY=1", daemon)

        // SIGTERM: STOPPING=1, exit 0.
        daemon.signal(SIGTERM)
        _ = expectMessage("STOPPING=1", daemon)
        #expect(daemon.waitForExit(timeout: .seconds(30)) == 0)
        #expect(daemon.stderr.contains("stopped"))
        #expect(!daemon.stderr.contains(ConfigFixture.canary))
        #expect(!daemon.stdout.contains(ConfigFixture.canary))
    }

    @Test func brokenConfigurationOnReloadKeepsRunning() throws {
        let daemon = try startDaemon()
        _ = expectMessage("READY=1", daemon)

        fixture.writeConfiguration("[service]\npoll_interval = \"often\"\n" + Self.offlineTenant + "\n" + ConfigFixture.sink)
        daemon.signal(SIGHUP)
        _ = expectMessage("RELOADING=1", daemon)
        _ = expectMessage("READY=1", daemon)
        // Still alive and still pinging.
        _ = expectMessage("WATCHDOG=1", daemon)
        #expect(daemon.process.isRunning)
        #expect(daemon.stderr.contains("defender-alertd.toml:2: service.poll_interval"))
        #expect(daemon.stderr.contains("running configuration stays in force"))

        daemon.signal(SIGINT)
        _ = expectMessage("STOPPING=1", daemon)
        #expect(daemon.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test func manySignalsInARowAreHandled() throws {
        let daemon = try startDaemon()
        _ = expectMessage("READY=1", daemon)
        for _ in 0..<10 { daemon.signal(SIGHUP) }
        daemon.signal(SIGTERM)
        _ = expectMessage("STOPPING=1", daemon)
        #expect(daemon.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test func underTheJournalItLogsNativeEntries() throws {
        try #require(Journal.isListening(), "no journald listening: run the tests through `make test`")
        let config = fixture.writeConfiguration(Self.offlineTenant + "\n" + ConfigFixture.sink)
        let daemon = try DaemonProcess(["run", "--config", config, "--log-target", "journal"], environment: ["NOTIFY_SOCKET": socket.address])
        _ = expectMessage("READY=1", daemon)
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: .seconds(30)) == 0)

        let entries = try Journal.entries(matching: "DEFENDER_CONFIG=\(config)", expected: 1)
        let starting = try #require(entries.first { $0["MESSAGE"]?.contains("starting") == true })
        #expect(starting["SYSLOG_IDENTIFIER"] == "defender-alertd")
        #expect(starting["PRIORITY"] == "5")
        #expect(starting["DEFENDER_LOG_TARGET"] == "journal")
        #expect(starting["_PID"] == "\(daemon.pid)")
        #expect(!entries.contains { $0.values.contains { $0.contains(ConfigFixture.canary) } })
    }

    @Test func aDamagedStateDatabaseStopsTheDaemonWithAClearMessage() throws {
        fixture.directory.write("state/state.sqlite", String(repeating: "garbage ", count: 1000), mode: 0o600)
        let config = fixture.writeConfiguration("[service]\nstate_directory = \"state\"\n" + Self.offlineTenant + "\n" + ConfigFixture.sink)
        let daemon = try DaemonProcess(["run", "--config", config, "--log-target", "stderr"], environment: ["NOTIFY_SOCKET": socket.address])
        #expect(daemon.waitForExit(timeout: .seconds(30)) == 1)
        #expect(daemon.stderr.contains("state.sqlite"), "\(daemon.stderr)")
        #expect(daemon.stderr.contains("never reset automatically") || daemon.stderr.contains("damaged"))
        #expect(socket.receive(timeout: .milliseconds(1)) == nil)  // never claimed readiness
        // Nothing was reset: the file is as it was.
        #expect(try String(contentsOfFile: fixture.directory.file("state/state.sqlite"), encoding: .utf8).hasPrefix("garbage"))
    }

    @Test func invalidConfigurationExits78BeforeReady() throws {
        let config = fixture.writeConfiguration(ConfigFixture.tenant + "\nlookback = \"forever\"\n" + ConfigFixture.sink)
        let daemon = try DaemonProcess(["run", "--config", config], environment: ["NOTIFY_SOCKET": socket.address])
        #expect(daemon.waitForExit(timeout: .seconds(30)) == 78)
        #expect(daemon.stderr.contains("\(config):6: tenant.lookback:"))
        #expect(socket.receive(timeout: .milliseconds(1)) == nil)  // never claimed readiness
    }
}

@Suite("Command line")
struct CommandLineTests {
    let fixture = ConfigFixture()

    @Test func checkConfigAcceptsAValidFile() throws {
        let config = fixture.writeConfiguration(ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        let result = try DaemonProcess.run(["check-config", "--config", config])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("configuration is valid"))
        #expect(result.stdout.contains("tenant contoso"))
        #expect(!(result.stdout + result.stderr).contains(ConfigFixture.canary))
    }

    @Test(arguments: [
        ("[service\n", ":1: TOML syntax error"),
        ("[service]\npoll_intervl = \"1m\"\n", ":2: service.poll_intervl: unknown key"),
        ("[service]\nmax_outbox = true\n", ":2: service.max_outbox: expected an integer"),
        ("[service]\npoll_interval = \"1 minute\"\n", ":2: service.poll_interval:"),
    ])
    func checkConfigRejectsBrokenFiles(prefix: String, expected: String) throws {
        let config = fixture.writeConfiguration(prefix + ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        let result = try DaemonProcess.run(["check-config", "--config", config])
        #expect(result.status == 78)
        #expect(result.stderr.contains(config + expected), "\(result.stderr)")
    }

    @Test func checkConfigRejectsALooseSecret() throws {
        let loose = ConfigFixture(secretMode: 0o644)
        let config = loose.writeConfiguration(ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        let result = try DaemonProcess.run(["check-config", "--config", config])
        #expect(result.status == 78)
        #expect(result.stderr.contains("\(config):5: tenant.client_secret_file:"))
        #expect(result.stderr.contains("chmod 600"))
        #expect(!result.stderr.contains(ConfigFixture.canary))
    }

    @Test func checkConfigRejectsAMissingFile() throws {
        let result = try DaemonProcess.run(["check-config", "--config", fixture.directory.file("none.toml")])
        #expect(result.status == 78)
        #expect(result.stderr.contains("configuration file not found"))
    }

    @Test func theShippedExampleChecksOutWithACredential() throws {
        let credentials = TemporaryDirectory()
        credentials.write("client-secret", ConfigFixture.canary, mode: 0o400)
        let example = try String(contentsOfFile: repositoryRoot + "/config/defender-alertd.toml", encoding: .utf8)
        let config = fixture.writeConfiguration(example)
        let result = try DaemonProcess.run(["check-config", "--config", config], environment: ["CREDENTIALS_DIRECTORY": credentials.path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(!(result.stdout + result.stderr).contains(ConfigFixture.canary))
    }

    @Test func versionAndHelp() throws {
        let version = try DaemonProcess.run(["--version"])
        #expect(version.status == 0)
        #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3)
        let help = try DaemonProcess.run(["--help"])
        #expect(help.status == 0)
        for command in ["run", "check-config"] { #expect(help.stdout.contains(command)) }
        let runHelp = try DaemonProcess.run(["run", "--help"])
        #expect(runHelp.stdout.contains("--config"))
        #expect(runHelp.stdout.contains("--log-target"))
    }

    @Test func unknownCommandIsAUsageError() throws {
        let result = try DaemonProcess.run(["frobnicate"])
        #expect(result.status != 0)
        #expect(result.status != 78)
    }
}

let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()
