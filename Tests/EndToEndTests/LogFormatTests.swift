import Foundation
import TestSupport
import Testing

/// `log_format`: the daemon's own lines on standard error (outside systemd: a container), as
/// JSON objects a collector parses, or plain text; a reload switches at once.
@Suite("Log format on standard error", .serialized)
struct LogFormatTests {
    @Test func jsonLinesThenPlainTextAfterAReload() throws {
        let harness = try PipelineHarness(simulatorArguments: ["--backlog", "3", "--backlog-span", "600"])
        harness.configure(sinks: PipelineHarness.fileSink("a"), service: "log_format = \"json\"")
        let daemon = try harness.startDaemon()
        harness.waitUntil("the alerts arrive") { harness.delivered().count == 3 }

        let jsonLines = daemon.stderr.split(separator: "\n").map(String.init)
        #expect(jsonLines.count >= 3, "\(daemon.stderr)")
        for line in jsonLines {
            let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            #expect(object?["MESSAGE"] is String && object?["TIMESTAMP"] is String && object?["PRIORITY"] is String, "not a log object: \(line)")
        }
        let starting = jsonLines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
            .first { ($0["MESSAGE"] as? String)?.contains(" starting: ") == true }
        #expect(starting?["DEFENDER_LOG_TARGET"] as? String == "stderr" && starting?["PRIORITY"] as? String == "5", "\(daemon.stderr.prefix(2000))")

        harness.configure(sinks: PipelineHarness.fileSink("a"), service: "log_format = \"text\"")
        daemon.signal(SIGHUP)
        harness.waitUntil("the reload is logged") { daemon.stderr.contains("configuration reloaded") }
        let reloaded = try #require(daemon.stderr.split(separator: "\n").last { $0.contains("configuration reloaded") })
        #expect(!reloaded.hasPrefix("{") && reloaded.contains("notice"), "\(reloaded)")
        harness.stopDaemon()
        #expect(!daemon.stderr.contains(ConfigFixture.canary))
    }
}
