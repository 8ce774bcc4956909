import Foundation
import OrderedJSON
import TestSupport
import Testing

/// Issue 25 end to end: the daemon process polls alerts and incidents and delivers them in
/// several shapes at once (Defender's JSON to a file, ECS into the Elasticsearch bulk API, OCSF
/// over syslog to rsyslog, OCSF with split evidence to a file and to Splunk HEC, journal
/// entries), each record exactly once per version in each shape, every mapped record valid by
/// the schemas' own definitions.
@Suite(
    "Schemas end to end", .serialized,
    .enabled(if: RsyslogReceiver.isInstalled, "needs rsyslogd: Debian's rsyslog"),
    .enabled(if: SchemaValidator.isAvailable, "the reference schemas are not in ../shared/schemas (or DEFENDER_SCHEMAS_DIR)"))
struct SchemaPipelineTests {
    static func fileSink(_ name: String, _ keys: String) -> String {
        """
        [[sink]]
        name = "\(name)"
        type = "file"
        path = "\(name).jsonl"
        format = "alert"
        \(keys)

        """
    }

    /// The JSON after the structured data of each message rsyslog received.
    static func bodies(_ receiver: RsyslogReceiver) -> [JSONValue] {
        receiver.received(.tcp).compactMap { line in
            guard let end = line.range(of: "] {") else { return nil }
            return try? JSONValue(parsing: "{" + String(line[end.upperBound...]))
        }
    }

    static func lines(_ harness: PipelineHarness, _ sink: String) -> [JSONValue] {
        let text = (try? String(contentsOfFile: harness.fixture.directory.file("\(sink).jsonl"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONValue(parsing: String($0)) }
    }

    /// How many times each value occurs more than once.
    static func repeated(_ values: [String]) -> [String: Int] {
        Dictionary(values.map { ($0, 1) }, uniquingKeysWith: +).filter { $0.value > 1 }
    }

    /// Evidence entities of the alerts a native file holds (one record for an alert without).
    static func splitCount(_ alerts: [[String: Any]]) -> Int {
        alerts.reduce(0) { $0 + max(1, ($1["evidence"] as? [Any])?.count ?? 0) }
    }

    @Test func graphAlertsAndIncidentsArriveOncePerVersionInEveryShape() async throws {
        let receiver = try RsyslogReceiver(maxMessageSize: "1m")
        try await receiver.start()
        defer { receiver.stop() }
        let siem = FakeSIEM()
        let harness = try PipelineHarness(simulatorArguments: ["--backlog", "30", "--backlog-span", "3600"])
        harness.fixture.directory.write("token", siem.token + "\n", mode: 0o600)
        let incidents = try harness.simulatorIncidentIDs()
        #expect(incidents.count > 1 && incidents.count < 30, "the simulator groups alerts into incidents")
        try await siem.serve { base throws in
            harness.configure(
                tenant: #"api = "graph""# + "\n" + #"records = ["alerts", "incidents"]"# + "\n" + #"forward = "updates""#,
                sinks: PipelineHarness.fileSink("a")
                    + HTTPPipelineTests.httpSink("elastic", base + "/_bulk", "elasticsearch-bulk", #"schema = "ecs""#)
                    + SyslogPipelineTests.syslogSink("siem", receiver, .tcp, "schema = \"ocsf\"\nmax_message_size = \"1MiB\"")
                    + Self.fileSink("split", "schema = \"ocsf\"\nevidence = \"split\"")
                    + HTTPPipelineTests.httpSink(
                        "splunk", base + "/services/collector/event", "splunk-hec", "schema = \"ocsf\"\nevidence = \"split\"")
                    + "[[sink]]\nname = \"journal\"\ntype = \"journal\"\n")
            let daemon = try harness.startDaemon()
            let total = 30 + incidents.count
            await HTTPPipelineTests.eventually("every alert and incident in every sink", harness: harness) {
                let split = Self.splitCount(harness.deliveredAlerts().map(\.alert)) + incidents.count
                return harness.delivered().count == 30 && harness.deliveredIncidents().count == incidents.count
                    && siem.bulkDocuments.count == total && Self.bodies(receiver).count == total
                    && Self.lines(harness, "split").count == split && siem.hecEvents.count == split
            }
            // One alert of an incident changes: it and its incident arrive again, once, in each shape.
            let changed = try #require(harness.deliveredIncidents().first?.incident["alerts"] as? [[String: Any]]).first?["id"] as? String ?? ""
            let now = ISO8601DateFormatter().string(from: Date())
            try harness.control("POST", "alerts/\(changed)", #"{"changes": {"status": "InProgress"}, "lastUpdateTime": "\#(now)"}"#)
            await HTTPPipelineTests.eventually("the change in every sink", harness: harness) {
                let split = Self.splitCount(harness.deliveredAlerts().map(\.alert)) + incidents.count + 1
                return harness.delivered().count == 31 && harness.deliveredIncidents().count == incidents.count + 1
                    && siem.bulkDocuments.count == total + 2 && Self.bodies(receiver).count == total + 2
                    && Self.lines(harness, "split").count == split && siem.hecEvents.count == split
            }
            let pid = daemon.pid
            harness.stopDaemon()

            // The journal: an entry per version, incidents under their own MESSAGE_ID.
            if Journal.isListening() {
                let entries = try Journal.entries(matching: "_PID=\(pid)", expected: total + 2).filter { $0["DEFENDER_KIND"] != nil }
                let incidentEntries = entries.filter { $0["MESSAGE_ID"] == "3c8e0f5a9d2b4c71a6e4b0d8f2c9e317" }
                #expect(
                    incidentEntries.count == incidents.count + 1
                        && incidentEntries.allSatisfy { $0["DEFENDER_KIND"] == "incident" && $0["DEFENDER_INCIDENT_ID"] != nil })
                #expect(Set(incidentEntries.compactMap { $0["DEFENDER_INCIDENT_ID"] }) == incidents)
                #expect(entries.filter { $0["MESSAGE_ID"] == "b5d1e2c74a0f4e6c9d3a8f1b27c6e950" && $0["DEFENDER_ALERT_ID"] != nil }.count == 31)
            } else {
                Issue.record("no journald listening: run the tests through `make test`")
            }

            // Splunk HEC: OCSF split by evidence, each kind under its own sourcetype.
            let hec = siem.hecEvents
            #expect(hec.filter { $0["sourcetype"] == .string("defender:incident:ocsf") }.count == incidents.count + 1)
            #expect(hec.filter { $0["sourcetype"] == .string("defender:alert:ocsf") }.allSatisfy { $0["event"]?["class_uid"] == .number("2004") })
            let hecProblems = try SchemaValidator.problems("ocsf", hec.compactMap { $0["event"]?.serialized })
            #expect(hecProblems.isEmpty, "\(hecProblems.prefix(20).joined(separator: "\n"))")

            // Defender's own JSON, each version once.
            let native =
                harness.deliveredAlerts().map { "\($0.alert["id"] ?? "")@\($0.alert["lastUpdateDateTime"] ?? "")" }
                + harness.deliveredIncidents().map { "incident \($0.incident["id"] ?? "")@\($0.incident["lastUpdateDateTime"] ?? "")" }
            #expect(Self.repeated(native).isEmpty && native.count == total + 2)
            #expect(Set(harness.deliveredIncidents().compactMap { $0.incident["id"] as? String }) == incidents)

            // ECS into Elasticsearch: alerts and incidents in their own indices, each version
            // one action (nothing sent twice), valid ECS.
            let actions = siem.bulkActions
            #expect(Self.repeated(actions.map(\.id)).isEmpty && actions.count == total + 2)
            #expect(actions.filter { $0.index == "defender-incidents" }.count == incidents.count + 1)
            #expect(actions.filter { $0.index == "defender-alerts" }.count == 31)
            let ecs = siem.bulkDocuments.map(\.document)
            #expect(ecs.allSatisfy { $0.at("ecs.version") == .string("9.4.0") && $0.at("defender.tenant") == .string("contoso") })
            #expect(ecs.filter { $0.at("event.dataset") == .string("defender_alertd.incident") }.count == incidents.count + 1)
            let ecsProblems = try SchemaValidator.problems("ecs", ecs.map(\.serialized))
            #expect(ecsProblems.isEmpty, "\(ecsProblems.prefix(20).joined(separator: "\n"))")

            // OCSF over syslog and OCSF split to a file: each version (each entity) once, valid OCSF.
            let ocsf = Self.bodies(receiver)
            let repeatedOCSF = Self.repeated(ocsf.compactMap { $0.at("metadata.uid")?.stringValue })
            #expect(repeatedOCSF.isEmpty, "\(repeatedOCSF)")
            #expect(ocsf.filter { $0["class_uid"] == .number("2005") }.count == incidents.count + 1)
            #expect(ocsf.filter { $0["class_uid"] == .number("2004") }.count == 31)
            let split = Self.lines(harness, "split")
            #expect(split.count > 31 + incidents.count, "the alerts have evidence to split: \(split.count) records")
            let repeatedSplit = Self.repeated(split.compactMap { $0.at("metadata.uid")?.stringValue })
            #expect(repeatedSplit.isEmpty, "\(repeatedSplit)")
            let ocsfProblems = try SchemaValidator.problems("ocsf", (ocsf + split).map(\.serialized))
            #expect(ocsfProblems.isEmpty, "\(ocsfProblems.prefix(20).joined(separator: "\n"))")
            // The incident and the alert that changed came as updates.
            #expect(ocsf.contains { $0["class_uid"] == .number("2005") && $0["activity_id"] == .number("2") })
            #expect(ocsf.contains { $0.at("finding_info.uid") == .string(changed) && $0["status_id"] == .number("2") })
            #expect(!daemon.stderr.contains(ConfigFixture.canary))
        }
    }

    @Test func mdeAlertsInECSAndOCSFWithSplitEvidence() throws {
        let harness = try PipelineHarness(simulatorArguments: ["--backlog", "20", "--backlog-span", "3600"])
        harness.configure(
            sinks: PipelineHarness.fileSink("a")
                + Self.fileSink("ecs", "schema = \"ecs\"\nevidence = \"split\"\ninclude_original = true")
                + Self.fileSink("ocsf", "schema = \"ocsf\""))
        try harness.startDaemon()
        harness.waitUntil("every alert in every shape") {
            harness.delivered().count == 20 && Self.lines(harness, "ocsf").count == 20
                && Self.lines(harness, "ecs").count == Self.splitCount(harness.deliveredAlerts().map(\.alert))
        }
        harness.stopDaemon()
        let ecs = Self.lines(harness, "ecs"), ocsf = Self.lines(harness, "ocsf")
        let ids = Set(harness.deliveredAlerts().compactMap { $0.alert["id"] as? String })
        #expect(
            Set(ecs.compactMap { $0.at("event.id")?.stringValue }) == ids && Set(ocsf.compactMap { $0.at("finding_info.uid")?.stringValue }) == ids)
        // include_original: each split document carries its alert as Defender returned it.
        #expect(
            ecs.allSatisfy { document in
                document.at("event.original")?.stringValue.flatMap { try? JSONValue(parsing: $0) }?["id"] == document.at("event.id")
            })
        let ecsProblems = try SchemaValidator.problems("ecs", ecs.map(\.serialized))
        #expect(ecsProblems.isEmpty, "\(ecsProblems.prefix(20).joined(separator: "\n"))")
        let ocsfProblems = try SchemaValidator.problems("ocsf", ocsf.map(\.serialized))
        #expect(ocsfProblems.isEmpty, "\(ocsfProblems.prefix(20).joined(separator: "\n"))")
        #expect(ocsf.allSatisfy { $0.at("metadata.product.name") == .string("Microsoft Defender for Endpoint") })
    }
}
