import Foundation
import TestSupport
import Testing

/// `poll-once`, `state show`, `state reset`, and reload of the pipeline, as processes.
@Suite("Pipeline commands and reload")
struct CommandsTests {
    func run(_ harness: PipelineHarness, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try DaemonProcess.run(arguments + ["--config", harness.fixture.directory.file("defender-alertd.toml")])
    }

    /// `--help` names every source and every kind of sink (it once named Defender for Endpoint
    /// and the journal, files and stdout only), and promises no more than the daemon keeps.
    @Test func helpNamesEverySourceAndSink() throws {
        let help = try DaemonProcess.run(["--help"])
        #expect(help.status == 0)
        // Wrapped to the terminal's width: compared with single spaces.
        let text = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for word in [
            "Defender for Endpoint", "Microsoft Graph", "journal", "JSON Lines", "standard output", "syslog", "RELP", "CEF", "Splunk HEC",
            "Elasticsearch", "webhooks",
        ] {
            #expect(text.contains(word), "--help does not name \(word)")
        }
        #expect(!text.contains("none is sent twice"))
    }

    /// One alert stamped 2030 used to move the watermark to 2030: every later poll asked for
    /// alerts from 2029 on and never saw a new one (issue 11, hole 11).
    @Test func anAlertFromTheFutureIsForwardedAndPollingGoesOn() throws {
        let harness = try PipelineHarness()
        harness.configure()
        let untilThen = Int(ISO8601DateFormatter().date(from: "2030-01-01T00:00:00Z")!.timeIntervalSinceNow) + 60  // visible a minute ago
        try harness.control(
            "POST", "alerts",
            #"{"visibleAfterSeconds": -\#(untilThen), "alerts": [{"id": "da-future", "severity": "High", "title": "from the future", "lastUpdateTime": "2030-01-01T00:00:00Z"}]}"#
        )
        let first = try run(harness, ["poll-once"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(harness.delivered().map(\.id) == ["da-future"])
        #expect(first.stderr.contains("stamped in the future"))
        #expect(!(try run(harness, ["state", "show"]).stdout.contains("watermark 2030")))
        try harness.control("POST", "alerts", #"{"count": 2}"#)
        #expect(try run(harness, ["poll-once"]).status == 0)
        #expect(harness.delivered().count == 3, "\(harness.delivered().map(\.id))")
    }

    @Test func aDryRunOnADamagedStateDatabaseSaysSo() throws {
        let harness = try PipelineHarness()
        harness.configure()
        harness.fixture.directory.write("state/state.sqlite", String(repeating: "not a database ", count: 100), mode: 0o600)
        let dry = try run(harness, ["poll-once", "--dry-run"])
        #expect(dry.status != 0)
        #expect(
            dry.stderr.contains("state.sqlite") && dry.stderr.contains("damaged") || dry.stderr.contains("cannot open the state database"),
            "\(dry.stderr)")
        #expect(dry.stdout.isEmpty)
    }

    @Test func pollOnceDryRunStateShowAndReset() throws {
        let harness = try PipelineHarness()
        harness.configure()
        try harness.control("POST", "alerts", #"{"count": 4}"#)

        // Dry run: prints, changes nothing.
        let dry = try run(harness, ["poll-once", "--dry-run"])
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(dry.stdout.split(separator: "\n").count == 4)
        #expect(dry.stdout.contains("\"already_forwarded\":false"))
        #expect(harness.delivered().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: harness.fixture.directory.file("state")), "the dry run created the state directory")
        #expect(try run(harness, ["state", "show"]).stdout.contains("watermark none"))

        // One real cycle: polled and delivered.
        let once = try run(harness, ["poll-once"])
        #expect(once.status == 0, "\(once.stderr)")
        #expect(harness.delivered().count == 4)
        #expect(harness.delivered("b").count == 4)
        let shown = try run(harness, ["state", "show"]).stdout
        #expect(shown.contains("tenant contoso: watermark 20"))
        #expect(shown.contains("4 dedup keys"))
        #expect(shown.contains("sink a: 0 alerts queued"))

        // Already forwarded now.
        #expect(try run(harness, ["poll-once", "--dry-run"]).stdout.contains("\"already_forwarded\":true"))
        #expect(try run(harness, ["poll-once"]).status == 0)
        #expect(harness.delivered().count == 4)

        // Reset needs --yes, then forgets the cursor: the next cycle delivers again.
        let refused = try run(harness, ["state", "reset", "--tenant", "contoso"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("--yes"))
        #expect(try run(harness, ["state", "reset", "--tenant", "contoso", "--yes"]).status == 0)
        #expect(try run(harness, ["state", "show"]).stdout.contains("watermark none"))
        #expect(try run(harness, ["poll-once"]).status == 0)
        #expect(harness.delivered().count == 8)
        #expect(!(dry.stdout + dry.stderr + once.stderr).contains(ConfigFixture.canary))
    }

    @Test func pollOnceFailsVisiblyWhenTheAPIIsDown() throws {
        let harness = try PipelineHarness(simulatorArguments: ["--fault", "alerts:status:status=503"])
        harness.configure()
        let result = try run(harness, ["poll-once"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("503"))
    }

    @Test func reloadAddsASinkWithoutLosingQueuedAlerts() throws {
        let harness = try PipelineHarness()
        harness.configure(sinks: PipelineHarness.fileSink("a"))
        try harness.control("POST", "alerts", #"{"count": 3}"#)
        let daemon = try harness.startDaemon()
        harness.waitUntil("3 alerts in a") { harness.delivered().count == 3 }
        harness.configure()  // adds sink b
        daemon.signal(SIGHUP)
        let reloaded = harness.socket.receive(until: { $0.contains("READY=1") }, timeout: .seconds(30))
        #expect(reloaded.matched != nil)
        try harness.control("POST", "alerts", #"{"count": 2}"#)
        harness.waitUntil("new alerts reach both sinks") { harness.delivered().count == 5 && harness.delivered("b").count == 2 }
        harness.stopDaemon()
        #expect(Set(harness.delivered().map(\.id)).count == 5)
    }
}
