import AlertForwarder
import Logging
import Systemd
import TestSupport
import Testing

@Suite("Reload on SIGHUP")
struct DaemonReloadTests {
    let fixture = ConfigFixture()
    let notifier = RecordingNotifier()
    let records = LogRecords()

    func makeDaemon() throws -> (Daemon, LogControl) {
        let configuration = try fixture.load(ConfigFixture.tenant + "\n" + ConfigFixture.sink)
        let level = LogControl(.trace)
        let daemon = try Daemon(
            configuration: configuration, loader: ConfigurationLoader(environment: [:]), logControl: level,
            notifier: notifier, logger: records.logger()
        )
        return (daemon, level)
    }

    @Test func validChangeIsApplied() async throws {
        let (daemon, level) = try makeDaemon()
        #expect(level.level == .info)  // from the file, not the initial value
        #expect(daemon.status.current == "1 tenant (contoso), 1 sink (journal)")
        notifier.reset()

        fixture.directory.write(
            "defender-alertd.toml",
            "[service]\nlog_level = \"debug\"\n" + ConfigFixture.tenant + "\n" + ConfigFixture.sink
                + "\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"alerts.jsonl\"\n", mode: 0o644)
        await daemon.reload()

        #expect(level.level == .debug)
        #expect(daemon.configuration.sinks.map(\.name) == ["journal", "archive"])
        let sent = notifier.sent
        guard case .reloading(let usec) = sent.first else {
            Issue.record("RELOADING=1 must come first, got \(sent)")
            return
        }
        #expect(usec > 0)
        #expect(sent.last == .ready)
        #expect(sent.contains(.status("1 tenant (contoso), 2 sinks (journal, archive)")))
        await daemon.shutdown()
    }

    /// state_directory, ca_file and proxy_url are built in at start: a reload that changes one
    /// is refused by name instead of being silently half-applied (issue 11, hole 8).
    @Test(arguments: ["state_directory = \"elsewhere\"", "proxy_url = \"http://proxy.example:3128\""])
    func aChangeThatNeedsARestartIsRefusedByName(line: String) async throws {
        let (daemon, level) = try makeDaemon()
        let before = daemon.configuration
        notifier.reset()
        fixture.directory.write(
            "defender-alertd.toml", "[service]\nlog_level = \"debug\"\n\(line)\n" + ConfigFixture.tenant + "\n" + ConfigFixture.sink,
            mode: 0o644)
        await daemon.reload()
        #expect(daemon.configuration == before)
        #expect(level.level == .info, "nothing of the refused file was applied")
        #expect(notifier.sent.last == .ready)
        let key = String(line.prefix { $0 != " " })
        #expect(records.at(.error).contains { $0.message.contains("\(key) changed, which only a restart applies") })
        await daemon.shutdown()
    }

    @Test func invalidChangeKeepsTheRunningConfiguration() async throws {
        let (daemon, level) = try makeDaemon()
        let before = daemon.configuration
        notifier.reset()

        fixture.directory.write("defender-alertd.toml", "[service]\nlog_level = \"loud\"\n" + ConfigFixture.tenant, mode: 0o644)
        await daemon.reload()

        #expect(daemon.configuration == before)
        #expect(level.level == .info)
        #expect(notifier.sent.last == .ready)
        let errors = records.at(.error).map(\.message)
        #expect(errors.contains { $0.contains("defender-alertd.toml:2: service.log_level") })
        #expect(errors.contains { $0.contains("running configuration stays in force") })
        await daemon.shutdown()
    }

    @Test func secretsNeverReachTheLog() async throws {
        let (daemon, _) = try makeDaemon()
        fixture.directory.write("defender-alertd.toml", ConfigFixture.tenant + "\nclient_secret = \"\(ConfigFixture.canary)\"\n", mode: 0o644)
        await daemon.reload()
        #expect(!records.fullText.contains(ConfigFixture.canary))
        #expect(!records.fullText.isEmpty)
        await daemon.shutdown()
    }
}
