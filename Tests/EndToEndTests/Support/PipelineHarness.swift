import Foundation
import TestSupport
import Testing

/// `defender-sim` and `defender-alertd` as real processes, the daemon delivering into files.
final class PipelineHarness: @unchecked Sendable {
    // @unchecked: each test owns its harness and uses it from one task.
    let fixture = ConfigFixture()
    let simulator: DaemonProcess
    let base: String
    var daemon: DaemonProcess?
    let socket = NotifySocket()

    init(simulatorArguments: [String] = []) throws {
        simulator = try DaemonProcess(["--port", "0", "--client-secret", ConfigFixture.canary] + simulatorArguments, executable: "defender-sim")
        base = try #require(simulator.waitForLine(startingWith: "listening "), "\(simulator.stderr)")
    }

    deinit {
        simulator.signal(SIGKILL)
    }

    /// A `[[sink]]` writing envelopes to `path` (default `<name>.jsonl`).
    static func fileSink(_ name: String, path: String? = nil) -> String {
        """
        [[sink]]
        name = "\(name)"
        type = "file"
        path = "\(path ?? name + ".jsonl")"
        format = "envelope"

        """
    }

    /// Writes the configuration: the tenant polls every second into file sinks `a` and `b`.
    func configure(tenant extra: String = "", sinks: String? = nil, service: String = "") {
        let sinkTables = sinks ?? Self.fileSink("a") + Self.fileSink("b")
        fixture.writeConfiguration(
            """
            [service]
            poll_interval = "1s"
            log_level = "debug"
            \(service)

            \(ConfigFixture.tenant)
            api_url = "\(base)"
            login_url = "\(base)"
            lookback = "1d"
            overlap = "10m"
            \(extra)

            \(sinkTables)
            """)
    }

    /// Starts the daemon; waits for READY=1.
    @discardableResult
    func startDaemon(environment: [String: String] = [:]) throws -> DaemonProcess {
        let daemon = try DaemonProcess(
            ["run", "--config", fixture.directory.file("defender-alertd.toml"), "--log-target", "stderr"],
            environment: ["NOTIFY_SOCKET": socket.address].merging(environment) { _, new in new })
        self.daemon = daemon
        let ready = socket.receive(until: { $0.contains("READY=1") }, timeout: .seconds(60))
        #expect(ready.matched != nil, "no READY=1: \(daemon.stderr)")
        return daemon
    }

    func stopDaemon() {
        guard let daemon else { return }
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: .seconds(60)) == 0, "\(daemon.stderr.suffix(3000))")
        self.daemon = nil
    }

    /// A control API call on the simulator.
    @discardableResult
    func control(_ method: String, _ path: String, _ body: String = "") throws -> String {
        let result = try DaemonProcess.curl([
            "-s", "-X", method, "--max-time", "30", "-H", "Content-Type: application/json",
            "-d", body, "\(base)/_simulator/\(path)",
        ])
        #expect(result.status == 0)
        return result.stdout
    }

    /// Every alert the simulator holds: id and lastUpdateTime.
    func simulatorAlerts() throws -> [(id: String, lastUpdateTime: String)] {
        let body = try control("GET", "alerts")
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return (object?["value"] as? [[String: Any]] ?? []).map { ($0["id"] as? String ?? "", $0["lastUpdateTime"] as? String ?? "") }
    }

    /// Successful `GET /api/alerts` calls the simulator has answered.
    func alertsCalls() throws -> Int {
        try requests("alerts", status: 200)
    }

    /// The envelope records a file sink holds: (event, id, lastUpdateTime, or Graph's
    /// lastUpdateDateTime, tenant).
    func delivered(_ sink: String = "a") -> [(event: String, id: String, lastUpdateTime: String, tenant: String)] {
        deliveredAlerts(sink).map {
            (
                $0.event, $0.alert["id"] as? String ?? "",
                $0.alert["lastUpdateTime"] as? String ?? $0.alert["lastUpdateDateTime"] as? String ?? "", $0.tenant
            )
        }
    }

    /// The envelope records a file sink holds, with the alert objects.
    func deliveredAlerts(_ sink: String = "a") -> [(event: String, tenant: String, alert: [String: Any])] {
        let text = (try? String(contentsOfFile: fixture.directory.file("\(sink).jsonl"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let alert = object["alert"] as? [String: Any]
            else { return nil }
            return (object["event"] as? String ?? "", object["tenant"] as? String ?? "", alert)
        }
    }

    /// The incidents a file sink holds (envelope records of kind `incident`): (event, incident).
    func deliveredIncidents(_ sink: String = "a") -> [(event: String, incident: [String: Any])] {
        let text = (try? String(contentsOfFile: fixture.directory.file("\(sink).jsonl"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], object["kind"] as? String == "incident",
                let incident = object["incident"] as? [String: Any]
            else { return nil }
            return (object["event"] as? String ?? "", incident)
        }
    }

    /// The simulator's alerts' incident ids.
    func simulatorIncidentIDs() throws -> Set<String> {
        let object = try JSONSerialization.jsonObject(with: Data(try control("GET", "alerts").utf8)) as? [String: Any]
        return Set((object?["value"] as? [[String: Any]] ?? []).compactMap { ($0["incidentId"] as? NSNumber)?.stringValue })
    }

    /// The simulator's counters: requests to `endpoint` answered with `status`.
    func requests(_ endpoint: String, status: Int) throws -> Int {
        let object = try JSONSerialization.jsonObject(with: Data(try control("GET", "counters").utf8)) as? [String: Any]
        return ((object?["requests"] as? [String: Any])?[endpoint] as? [String: Int])?[String(status)] ?? 0
    }

    /// A counter of the simulator's (`rateLimited`, `callsIgnoringRetryAfter`...).
    func counter(_ name: String) throws -> Int {
        let object = try JSONSerialization.jsonObject(with: Data(try control("GET", "counters").utf8)) as? [String: Any]
        return object?[name] as? Int ?? -1
    }

    /// Waits (bounded) until `condition` holds; records an issue when it never does.
    func waitUntil(
        _ what: String, timeout: Duration = .seconds(60), _ condition: () throws -> Bool,
        sourceLocation: SourceLocation = #_sourceLocation
    ) rethrows {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.1)  // waiting for other processes, not a timing assumption
        }
        Issue.record("timed out waiting until \(what); daemon log: \(daemon?.stderr.suffix(3000) ?? "")", sourceLocation: sourceLocation)
    }
}
