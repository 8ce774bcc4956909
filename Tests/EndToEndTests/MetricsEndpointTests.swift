import Foundation
import Telemetry
import TestSupport
import Testing

/// `/metrics` and `/healthz` of the daemon process, and reconciliation sweeps, end to end with
/// the simulator process. Scrapes are parsed by PyPI's prometheus-client, not by this project.
@Suite("Metrics, health and reconciliation end to end")
struct MetricsEndpointTests {
    static let metrics = #"metrics_listen = "127.0.0.1:0""#

    @Test func everyMetricIsScrapedWithItsTypeAndLabelsAndAgreesWithTheSinks() throws {
        // A 429 and a failed token request on the way, so that their series exist too.
        let harness = try PipelineHarness(simulatorArguments: [
            "--backlog", "30", "--backlog-span", "3600",
            "--fault", "alerts:rate-limit:count=1,retryAfter=1",
            "--fault", "token:status:count=1,status=503",
        ])
        harness.configure(service: Self.metrics)
        let daemon = try harness.startDaemon()
        let address = try #require(harness.metricsAddress())
        harness.waitUntil("30 alerts in both sinks") { harness.delivered("a").count == 30 && harness.delivered("b").count == 30 }
        // One more poll after the sinks confirmed (their counters count on confirmation).
        let polls = try harness.scrape(address, format: .prometheus)["defender_alertd_polls"]?.value(["result": "ok"]) ?? 0
        try harness.waitUntil("another poll") {
            (try harness.scrape(address, format: .prometheus)["defender_alertd_polls"]?.value(["result": "ok"]) ?? 0) > polls
        }

        for format in [ExpositionFormat.prometheus, .openMetrics] {
            let families = try harness.scrape(address, format: format)
            // The group's families are shown by a member of a group (GroupEndToEndTests).
            for family in MetricFamily.all where !MetricFamily.group.contains(family) {
                let name = family.kind == .counter ? String(family.name.dropLast("_total".count)) : family.name
                let parsed = try #require(families[name], "\(format): \(family.name) is missing")
                #expect(parsed.type == family.kind.rawValue, "\(format): \(family.name) is a \(parsed.type)")
                #expect(parsed.help == family.help)
                for sample in parsed.samples {
                    let labels = Set(sample.labels.keys).subtracting(["le"])
                    #expect(labels == Set(family.labels), "\(format): \(sample.name) has labels \(sample.labels.keys.sorted())")
                }
            }
            let tenant = ["tenant": "contoso", "api": "mde"]
            // What the sinks received.
            for sink in ["a", "b"] {
                #expect(families["defender_alertd_alerts_delivered"]?.value(["sink": sink]) == 30)
                #expect(families["defender_alertd_outbox_alerts"]?.value(["sink": sink]) == 0)
                #expect(families["defender_alertd_sink_failing"]?.value(["sink": sink]) == 0)
            }
            #expect(families["defender_alertd_alerts_admitted"]?.value(tenant) == 30)
            let fetched = families["defender_alertd_alerts_fetched"]?.value(tenant) ?? 0
            let duplicates = families["defender_alertd_alerts_duplicates"]?.value(tenant) ?? 0
            #expect(fetched == 30 + duplicates, "every element read was admitted or skipped as a duplicate")
            // What the simulator answered.
            let alertCalls =
                families["defender_alertd_api_requests"]?.value(tenant.merging(["endpoint": "alerts", "status_class": "2xx"]) { $1 }) ?? 0
            let answered = Double(try harness.alertsCalls())
            #expect(alertCalls >= 1 && alertCalls <= answered)
            #expect(families["defender_alertd_api_requests"]?.value(tenant.merging(["endpoint": "alerts", "status_class": "4xx"]) { $1 }) == 1)
            #expect(families["defender_alertd_api_throttled"]?.value(tenant) == 1)
            // Some of the Retry-After second, not all of it: under load 0.44 s was seen (a request
            // that waited only for the rest of the budget's pause counts that rest).
            #expect((families["defender_alertd_retry_after_wait_seconds"]?.value(tenant) ?? 0) > 0)
            #expect(families["defender_alertd_token_failures"]?.value(tenant.merging(["code": "none"]) { $1 }) == 1)
            #expect((families["defender_alertd_token_requests"]?.value(tenant) ?? 0) >= 2)
            #expect(families["defender_alertd_poll_interval_seconds"]?.value(tenant) == 1)
            #expect(families["defender_alertd_overlap_seconds"]?.value(tenant) == 600)
            #expect((families["process_resident_memory_bytes"]?.value([:]) ?? 0) > 1_000_000)
            #expect(families["defender_alertd_build_info"]?.samples.first?.labels["version"] != nil)
        }
        // Healthy; unknown paths and other methods are refused.
        #expect(try harness.get(address, "/healthz") == (200, #"{"status":"ok"}"#))
        #expect(try harness.get(address, "/healthz/live") == (200, #"{"status":"ok"}"#))
        #expect(try harness.get(address, "/healthz/ready") == (200, #"{"status":"ok"}"#))
        #expect(try harness.get(address, "/nothing").status == 404)
        #expect(try harness.get(address, "/healthz/other").status == 404)
        #expect(try DaemonProcess.curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "http://\(address)/metrics"]).stdout == "405")
        harness.stopDaemon()
        #expect(!daemon.stderr.contains(ConfigFixture.canary))
    }

    @Test func healthTurns503WhileASinkIsDownPastItsAllowanceAnd200WhenItRecovers() throws {
        let harness = try PipelineHarness(simulatorArguments: ["--backlog", "5", "--backlog-span", "600"])
        let port = try LoopbackPort.free()
        harness.configure(
            sinks: PipelineHarness.fileSink("a") + """
                [[sink]]
                name = "siem"
                type = "syslog"
                address = "tcp://127.0.0.1:\(port)"
                timeout = "2s"

                """, service: Self.metrics + "\nunhealthy_after = \"2s\"")
        try harness.startDaemon()
        let address = try #require(harness.metricsAddress())
        harness.waitUntil("the file sink has the alerts") { harness.delivered("a").count == 5 }
        // Nothing listens on the syslog port: the sink fails, and after 2 s /healthz says so.
        try harness.waitUntil("/healthz answers 503") { try harness.get(address, "/healthz").status == 503 }
        let body = try harness.get(address, "/healthz").body
        let report = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], "\(body)")
        #expect(report["status"] as? String == "unhealthy")
        let failing = report["failing"] as? [[String: Any]] ?? []
        #expect(failing.map { $0["component"] as? String } == ["sink:siem"], "\(body)")
        #expect((failing.first?["error"] as? String)?.isEmpty == false)
        #expect((report["stalled"] as? [Any])?.isEmpty == true)
        // A container's probes: a sink that is down is no reason to restart the daemon or to
        // call it not ready.
        #expect(try harness.get(address, "/healthz/live").status == 200)
        #expect(try harness.get(address, "/healthz/ready").status == 200)
        #expect(try harness.scrape(address, format: .prometheus)["defender_alertd_sink_failing"]?.value(["sink": "siem"]) == 1)
        // A receiver comes up: the sink delivers, and the daemon is healthy again.
        let receiver = try DaemonProcess(["-c", Self.tcpReceiver, String(port)], path: "/usr/bin/python3")
        defer { receiver.signal(SIGKILL) }
        try harness.waitUntil("/healthz answers 200", timeout: .seconds(120)) { try harness.get(address, "/healthz").status == 200 }
        #expect(try harness.scrape(address, format: .prometheus)["defender_alertd_alerts_delivered"]?.value(["sink": "siem"]) == 5)
        harness.stopDaemon()
    }

    @Test func aUnixSocketServesTheSameAndIsReplacedAtTheNextStart() throws {
        let harness = try PipelineHarness(simulatorArguments: ["--backlog", "3", "--backlog-span", "600"])
        let socket = harness.fixture.directory.file("metrics.sock")
        harness.configure(service: "metrics_listen = \"unix:\(socket)\"")
        for start in 0..<2 {
            try harness.startDaemon()
            #expect(harness.metricsAddress() == "unix:\(socket)")
            harness.waitUntil("the alerts arrive") { harness.delivered().count == 3 }
            let curl = { (path: String) in
                try DaemonProcess.curl(["-s", "--max-time", "10", "--unix-socket", socket, "http://localhost" + path]).stdout
            }
            #expect(try curl("/healthz") == "{\"status\":\"ok\"}\n")
            // Counters start at zero with each process; the alerts came with the first.
            #expect(try curl("/metrics").contains("defender_alertd_alerts_delivered_total{sink=\"a\"} \(start == 0 ? 3 : 0)\n"))
            harness.stopDaemon()
        }
    }

    /// Accepts TCP connections on 127.0.0.1:PORT and reads them to the end.
    static let tcpReceiver = """
        import socketserver, sys
        class Drain(socketserver.StreamRequestHandler):
            def handle(self):
                while self.rfile.read(65536):
                    pass
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Drain).serve_forever()
        """

    @Test func aPortInUseIsAClearErrorAndAlertsFlowOn() throws {
        let harness = try PipelineHarness(simulatorArguments: ["--backlog", "5", "--backlog-span", "600"])
        let port = try LoopbackPort.free()
        let holder = try DaemonProcess(["-c", Self.tcpReceiver, String(port)], path: "/usr/bin/python3")
        defer { holder.signal(SIGKILL) }
        harness.waitUntil("the port is taken") { LoopbackPort.accepts(port) }
        harness.configure(service: "metrics_listen = \"127.0.0.1:\(port)\"")
        let daemon = try harness.startDaemon()
        harness.waitUntil("the alerts arrive") { harness.delivered("a").count == 5 }
        harness.waitUntil("the error is logged") { daemon.stderr.contains("cannot serve metrics on metrics_listen 127.0.0.1:\(port)") }
        let status = harness.socket.receive(
            until: { $0.contains("metrics NOT SERVED (127.0.0.1:\(port): Address already in use)") }, timeout: .seconds(30))
        #expect(status.matched != nil, "\(status.all.suffix(3))")
        harness.stopDaemon()
    }

    @Test func anAlertVisibleLaterThanTheOverlapIsDeliveredByASweepCountedAndLogged() throws {
        let harness = try PipelineHarness()
        harness.configure(tenant: "reconcile_every = \"2s\"\nreconcile_window = \"2h\"", service: Self.metrics)
        // A fresh alert, so the watermark is now and each poll starts 10 minutes back.
        try harness.control("POST", "alerts", #"{"count": 1}"#)
        let daemon = try harness.startDaemon()
        let address = try #require(harness.metricsAddress())
        harness.waitUntil("the first alert arrives") { harness.delivered().count == 1 }
        // Updated 30 minutes ago, visible only now.
        let formatter = ISO8601DateFormatter()
        let late = try harness.control(
            "POST", "alerts", #"{"count": 1, "lastUpdateTime": "\#(formatter.string(from: Date().addingTimeInterval(-1800)))"}"#)
        let id = try #require((try JSONSerialization.jsonObject(with: Data(late.utf8)) as? [String: Any])?["ids"] as? [String]).first
        harness.waitUntil("the sweep delivers it") { harness.delivered().contains { $0.id == id } }
        let warning = try #require(
            daemon.stderr.split(separator: "\n").first {
                $0.contains("reconciliation sweep found an alert the polls missed") && $0.contains(id ?? "-")
            })
        #expect(warning.contains("warning"), "\(warning)")
        #expect(
            try harness.scrape(address, format: .openMetrics)["defender_alertd_alerts_found_by_reconciliation"]?.value([
                "tenant": "contoso", "api": "mde",
            ]) == 1)
        harness.stopDaemon()
        #expect(harness.delivered().filter { $0.id == id }.count == 1)
        let shown = try DaemonProcess.run(["state", "show", "--config", harness.fixture.directory.file("defender-alertd.toml")]).stdout
        #expect(shown.contains(", next sweep 20") && shown.contains("(last 20"), "\(shown)")
    }

    @Test func aRestartKeepsTheSweepSchedule() throws {
        let harness = try PipelineHarness(simulatorArguments: ["--backlog", "3", "--backlog-span", "600"])
        harness.configure(tenant: "reconcile_every = \"1h\"")
        let show = { try DaemonProcess.run(["state", "show", "--config", harness.fixture.directory.file("defender-alertd.toml")]).stdout }
        try harness.startDaemon()
        try harness.waitUntil("a sweep is scheduled") { try show().contains("next sweep") }
        harness.stopDaemon()
        let scheduled = try show().firstMatch(of: /next sweep (\S+)/).map { String($0.1) }
        #expect(scheduled != nil)
        try harness.startDaemon()
        harness.waitUntil("a poll after the restart") { harness.daemon?.stderr.contains("poll complete") == true }
        harness.stopDaemon()
        #expect(try show().firstMatch(of: /next sweep (\S+)/).map { String($0.1) } == scheduled, "a restart moved the sweep")
    }

    @Test func checkConfigSaysWhereMetricsAreServedAndHowEachTenantReconciles() throws {
        let fixture = ConfigFixture()
        let path = fixture.writeConfiguration(
            "[service]\nmetrics_listen = \"0.0.0.0:9464\"\n\n" + ConfigFixture.tenant + "\nreconcile_every = \"30m\"\n\n"
                + ConfigFixture.tenant.replacingOccurrences(of: "\"contoso\"", with: "\"fabrikam\"") + "\nreconcile_every = \"0\"\n\n"
                + ConfigFixture.sink)
        let result = try DaemonProcess.run(["check-config", "--config", path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("metrics and health at 0.0.0.0:9464 (not loopback: reachable from the network)"), "\(result.stdout)")
        #expect(result.stdout.contains("-> journal; reconcile every 30m over 1d"), "\(result.stdout)")
        #expect(result.stdout.contains("-> journal; no reconciliation"), "\(result.stdout)")
    }

    @Test func checkConfigNamesBadMetricsAndReconciliationKeysWithFileAndLine() throws {
        let fixture = ConfigFixture()
        let path = fixture.writeConfiguration(
            """
            [service]
            metrics_listen = "localhost"
            unhealthy_after = "soon"

            """ + ConfigFixture.tenant + """

                reconcile_every = "1 h"
                reconcile_window = "5m"

                """ + ConfigFixture.sink)
        let result = try DaemonProcess.run(["check-config", "--config", path])
        #expect(result.status == 78, "\(result.stdout)\(result.stderr)")
        for (line, text) in [
            (2, "service.metrics_listen: \"localhost\" is not a listen address"), (3, "service.unhealthy_after: \"soon\" is not a duration"),
            (9, "tenant.reconcile_every: \"1 h\" is not a duration"),
        ] {
            #expect(result.stderr.contains("\(path):\(line): \(text)"), "\(result.stderr)")
        }
    }
}

/// A metric family as prometheus-client parsed it.
struct ParsedFamily {
    var type: String
    var help: String
    var samples: [(name: String, labels: [String: String], value: Double)]

    /// The value of the sample whose labels include `labels` (buckets, sums and counts aside).
    func value(_ labels: [String: String]) -> Double? {
        samples.first { sample in
            !sample.name.hasSuffix("_bucket") && !sample.name.hasSuffix("_created") && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }?.value
    }
}

extension PipelineHarness {
    /// The address the daemon serves metrics on, from its log.
    func metricsAddress() -> String? {
        var address: String?
        waitUntil("the metrics server listens") {
            address = daemon?.stderr.split(separator: "\n").first { $0.contains("serving metrics") }?
                .firstMatch(of: /metrics_listen=(\S+)/).map { String($0.1) }
            return address != nil
        }
        return address
    }

    /// A GET on the daemon's metrics server: status and body.
    func get(_ address: String, _ path: String, accept: String? = nil) throws -> (status: Int, body: String) {
        let result = try DaemonProcess.curl(
            ["-s", "--max-time", "10", "-w", "\n%{http_code}"] + (accept.map { ["-H", "Accept: \($0)"] } ?? [])
                + ["http://\(address)\(path)"])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        var body = lines.dropLast().joined(separator: "\n")
        if body.hasSuffix("\n") { body.removeLast() }
        return (Int(lines.last ?? "") ?? 0, body)
    }

    /// `/metrics` in `format`, parsed by prometheus-client (Tests/Clients/parse_metrics.py).
    func scrape(_ address: String, format: ExpositionFormat) throws -> [String: ParsedFamily] {
        let accept = format == .openMetrics ? "application/openmetrics-text; version=1.0.0" : "text/plain; version=0.0.4"
        let (status, body) = try get(address, "/metrics", accept: accept)
        #expect(status == 200)
        let file = fixture.directory.write("scrape.txt", body.hasSuffix("\n") ? body : body + "\n")
        let parsed = try runToCompletion(
            "/usr/bin/env",
            [
                "python3", repositoryRoot + "/Tests/Clients/parse_metrics.py", file,
                format == .openMetrics ? "openmetrics" : "prometheus",
            ])
        let object = try JSONSerialization.jsonObject(with: Data(parsed.stdout.utf8)) as? [String: Any]
        #expect(parsed.status == 0, "prometheus-client refused the \(format) text: \(parsed.stdout) \(parsed.stderr)")
        var families: [String: ParsedFamily] = [:]
        for (name, value) in object?["families"] as? [String: [String: Any]] ?? [:] {
            let samples = (value["samples"] as? [[String: Any]] ?? []).map {
                ($0["name"] as? String ?? "", $0["labels"] as? [String: String] ?? [:], ($0["value"] as? NSNumber)?.doubleValue ?? .nan)
            }
            families[name] = ParsedFamily(type: value["type"] as? String ?? "", help: value["help"] as? String ?? "", samples: samples)
        }
        return families
    }
}
