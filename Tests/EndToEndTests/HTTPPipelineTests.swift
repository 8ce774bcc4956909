import Foundation
import OrderedJSON
import TestSupport
import Testing

/// The daemon process delivering to a local receiver that answers as Splunk HEC, the
/// Elasticsearch bulk API and a webhook do (served by this test process).
@Suite("HTTP sinks end to end", .serialized)
struct HTTPPipelineTests {
    static func httpSink(_ name: String, _ url: String, _ format: String, _ extra: String = "") -> String {
        """
        [[sink]]
        name = "\(name)"
        type = "http"
        url = "\(url)"
        format = "\(format)"
        token_file = "token"
        flush_interval = "200ms"
        timeout = "5s"
        \(extra)

        """
    }

    /// Waits without blocking a thread: the receiver runs in this process.
    static func eventually(
        _ what: String, timeout: Duration = .seconds(60), harness: PipelineHarness,
        _ condition: () throws -> Bool, sourceLocation: SourceLocation = #_sourceLocation
    ) async rethrows {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() { return }
            try? await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("timed out waiting until \(what); daemon log: \(harness.daemon?.stderr.suffix(3000) ?? "")", sourceLocation: sourceLocation)
    }

    static func poison() -> String {
        let now = ISO8601DateFormatter().string(from: Date())
        return #"{"alerts": [{"id": "da-poison", "severity": "High", "title": "poison", "lastUpdateTime": "\#(now)"}]}"#
    }

    @Test func splunkElasticAndAWebhookGetEveryAlertThroughFaultsAndThePoisonIsADeadLetter() async throws {
        let siem = FakeSIEM()
        let harness = try PipelineHarness()
        harness.fixture.directory.write("token", siem.token + "\n", mode: 0o600)
        try harness.control("POST", "alerts", #"{"count": 40}"#)
        try harness.control("POST", "alerts", Self.poison())
        // The first requests meet a rate limit and a busy receiver.
        siem.fail(next: [FakeSIEM.Fault(status: 429, retryAfter: "1"), FakeSIEM.Fault(status: 503, body: #"{"text":"Server is busy","code":9}"#)])
        try await siem.serve { base throws in
            harness.configure(
                sinks: PipelineHarness.fileSink("a")
                    + Self.httpSink("splunk", base + "/services/collector/event", "splunk-hec", "gzip = true")
                    + Self.httpSink("elastic", base + "/_bulk", "elasticsearch-bulk")
                    + Self.httpSink("hook", base + "/hook", "ndjson"))
            let daemon = try harness.startDaemon()
            // Every alert at least once: a request whose answer came after its `timeout` on a
            // loaded machine is sent again, and a receiver without ids keeps both copies.
            let expected = Set(try harness.simulatorAlerts().map(\.id)).subtracting(["da-poison"])
            #expect(expected.count == 40)
            let hooked = {
                Set(
                    siem.hookBodies.flatMap { String(decoding: $0, as: UTF8.self).split(separator: "\n") }
                        .compactMap { (try? JSONValue(parsing: String($0)))?["id"]?.stringValue })
            }
            await Self.eventually("40 events at Splunk", harness: harness) {
                Set(siem.hecEvents.compactMap { $0["event"]?["id"]?.stringValue }) == expected
            }
            await Self.eventually("40 documents at Elasticsearch", harness: harness) { siem.bulkDocuments.count == 40 }
            await Self.eventually("40 alerts at the webhook", harness: harness) { hooked() == expected }
            await Self.eventually("three dead letters logged", harness: harness) {
                daemon.stderr.components(separatedBy: "kept as a dead letter").count - 1 == 3
            }
            #expect(Set(siem.bulkDocuments.compactMap { $0.document["id"]?.stringValue }) == expected)
            #expect(siem.requests.contains { $0.status == 429 } && siem.requests.contains { $0.status == 503 })
            harness.stopDaemon()
            let listed = try DaemonProcess.run(["state", "dead-letters", "--config", harness.fixture.directory.file("defender-alertd.toml")])
            #expect(listed.stdout.contains("3 dead letters (all sinks)"), "\(listed.stdout)")
            #expect(listed.stdout.contains("sink elastic tenant contoso alert da-poison") && listed.stdout.contains("mapper_parsing_exception"))
            #expect(listed.stdout.contains("sink splunk tenant contoso alert da-poison") && listed.stdout.contains("Invalid data format"))
            #expect(!daemon.stderr.contains(siem.token) && !listed.stdout.contains(siem.token))
            #expect(!daemon.stderr.contains(ConfigFixture.canary))
        }
    }

    @Test func aWrongTokenKeepsTheAlertsQueuedAndSaysWhatToFix() async throws {
        let siem = FakeSIEM()
        let harness = try PipelineHarness()
        harness.fixture.directory.write("token", "CANARY-not-the-token\n", mode: 0o600)
        try harness.control("POST", "alerts", #"{"count": 5}"#)
        try await siem.serve { base throws in
            harness.configure(sinks: PipelineHarness.fileSink("a") + Self.httpSink("splunk", base + "/services/collector/event", "splunk-hec"))
            let daemon = try harness.startDaemon()
            await Self.eventually("the refusal logged", harness: harness) { daemon.stderr.contains("it needs a fix") }
            #expect(daemon.stderr.contains("refused access") && daemon.stderr.contains("Invalid token"))
            let status = harness.socket.receive(until: { $0.contains("sink splunk FAILING") }, timeout: .seconds(30))
            #expect(status.matched != nil, "\(status.all.suffix(3))")
            #expect(siem.hecEvents.isEmpty)
            #expect(!daemon.stderr.contains("CANARY-not-the-token"))
            harness.stopDaemon()
            let state = try DaemonProcess.run(["state", "show", "--config", harness.fixture.directory.file("defender-alertd.toml")])
            #expect(state.stdout.contains("sink splunk: 5 alerts queued, 0 dead letters"), "\(state.stdout)")
        }
    }
}
