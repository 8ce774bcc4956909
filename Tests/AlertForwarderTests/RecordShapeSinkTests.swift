import DefenderAPI
import Foundation
import OrderedJSON
import SIEMSchemas
import TestSupport
import Testing

@testable import AlertForwarder

/// What each sink makes of the kinds (alert, incident) and of `schema`, `evidence` and
/// `include_original` (issue 25); the mappings themselves: `SIEMSchemaTests`.
@Suite("Sinks: kinds, schemas, split evidence")
struct RecordShapeSinkTests {
    /// The Graph fixture's first alert (two evidence entities: its device and a process) and
    /// its first incident.
    static func graphAlert(id: Int64 = 1) throws -> OutboxRecord {
        let alert = try SIEMSchemaTests.fixture("graph-alerts-v2-page.json")[0]
        return OutboxRecord(
            id: id, sink: "s", tenant: "contoso", alertID: alert["id"]?.stringValue ?? "", event: "created",
            receivedAt: "2026-12-06T10:00:00Z", payload: alert.serialized)
    }

    static func incident(id: Int64 = 2) throws -> OutboxRecord {
        let incident = try SIEMSchemaTests.fixture("graph-incidents-page.json")[0]
        return OutboxRecord(
            id: id, sink: "s", tenant: "contoso", alertID: incident["id"]?.stringValue ?? "", event: "updated",
            receivedAt: "2026-12-06T10:00:00Z", payload: incident.serialized, kind: .incident)
    }

    static func notJSON(id: Int64 = 3) -> OutboxRecord {
        OutboxRecord(
            id: id, sink: "s", tenant: "contoso", alertID: "da-broken", event: "created", receivedAt: "2026-12-06T10:00:00Z",
            payload: "{not json")
    }

    static func lines(_ path: String) throws -> [JSONValue] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { try JSONValue(parsing: String($0)) }
    }

    @Test func aFileSinkWritesECSOneLinePerEvidenceAndRefusesWhatIsNotJSON() async throws {
        let directory = TemporaryDirectory()
        let path = directory.file("ecs.jsonl")
        let sink = FileSink(
            path: path, layout: RecordLine(format: .alert, shape: RecordShape(schema: .ecs, evidence: .split)), maxSize: 0, maxFiles: 0)
        let rejected = try await sink.send([Self.graphAlert(), Self.incident(), Self.notJSON()])
        #expect(
            rejected.map(\.recordID) == [3] && rejected.first?.reason.contains("not JSON, so it cannot be written as ecs with evidence split") == true
        )
        let documents = try Self.lines(path)
        #expect(documents.count == 3, "two evidence entities, one incident")
        #expect(documents.prefix(2).map { $0.at("defender.evidence_index") } == [.number("0"), .number("1")])
        #expect(documents.prefix(2).allSatisfy { $0.at("event.id") == .string("da638775403641234567_-1184307215") && $0.at("rule.name") != nil })
        #expect(documents[0].at("host.name") == .string("ws-fin-0142.corp.contoso.com") && documents[1].at("process.pid") == .number("7412"))
        #expect(documents[2].at("event.dataset") == .string("defender_alertd.incident") && documents[2].at("event.id") == .string("29"))
    }

    @Test func nativeSplitKeepsDefendersShapeWithOneEntityEach() async throws {
        let directory = TemporaryDirectory()
        let path = directory.file("native.jsonl")
        let sink = FileSink(path: path, layout: RecordLine(format: .alert, shape: RecordShape(evidence: .split)), maxSize: 0, maxFiles: 0)
        #expect(try await sink.send([Self.graphAlert()]).isEmpty)
        let documents = try Self.lines(path)
        let original = try JSONValue(parsing: Self.graphAlert().payload)
        guard case .array(let evidence)? = original["evidence"] else { Issue.record("the fixture has no evidence"); return }
        #expect(documents.count == evidence.count)
        for (document, entity) in zip(documents, evidence) {
            var expected = original
            expected.set("evidence", .array([entity]))
            #expect(document == expected)
        }
    }

    @Test func theDefaultShapeWritesTheBytesAsTheyCame() async throws {
        let record = try Self.graphAlert()
        #expect(RecordShape.native.documents(for: record) == [record.payloadBytes])
    }

    @Test func bulkDataStreamsTakeEachEvidenceAsADocumentAndIncidentsInTheirOwnStreamOncePerVersion() async throws {
        let siem = FakeSIEM()
        try await siem.serve { base throws in
            let settings = HTTPSinkSettings(
                url: base + "/_bulk", format: .elasticsearchBulk, token: Secret(siem.token),
                shape: RecordShape(schema: .ecs, evidence: .split), dataStream: true, pipeline: "defender-enrich")
            let sink = HTTPSink(settings: settings, proxy: ProxySettings(server: nil))
            let records = [try Self.graphAlert(), try Self.incident()]
            #expect(try await sink.send(records).isEmpty)
            let actions = siem.bulkActions
            let alertID = "da638775403641234567_-1184307215_2025-03-14T09:14:05.46Z"
            #expect(actions.map(\.id) == [alertID + "_0", alertID + "_1", "29_2026-02-25T16:29:33.1Z"])
            #expect(actions.allSatisfy { $0.operation == "create" && $0.pipeline == "defender-enrich" })
            #expect(
                actions.map(\.index) == Array(repeating: "logs-defender_alertd.alert-default", count: 2) + ["logs-defender_alertd.incident-default"])
            // Sent again (a retry after a lost answer): the stream refuses what it has (409),
            // which counts as delivered; nothing is doubled.
            #expect(try await sink.send(records).isEmpty)
            #expect(siem.bulkDocuments.count == 3 && siem.bulkActions.count == 6)
            await sink.shutdown()
        }
    }

    @Test func aBulkRecordIsDeliveredWhenAllItsDocumentsAreAndRefusedWhenOneIs() throws {
        let records = [try Self.graphAlert(id: 1), try Self.incident(id: 2), try Self.graphAlert(id: 3)]
        func item(_ status: Int) -> String {
            status < 300
                ? #"{"index":{"status":\#(status)}}"# : #"{"index":{"status":\#(status),"error":{"type":"mapper_parsing_exception","reason":"bad"}}}"#
        }
        let answer = #"{"errors":true,"items":["# + [201, 400, 201, 201, 201, 429, 201].map(item).joined(separator: ",") + "]}"
        let outcome = try HTTPSink.bulkOutcome(Data(answer.utf8), for: records, documents: [3, 1, 3])
        #expect(outcome.rejected.map(\.recordID) == [1])
        #expect(outcome.busy.map(\.id) == [3])
        let short = #"{"errors":true,"items":["# + [201, 400].map(item).joined(separator: ",") + "]}"
        #expect(throws: SinkError.self) { try HTTPSink.bulkOutcome(Data(short.utf8), for: records, documents: [3, 1, 3]) }
        // HEC's invalid-event-number counts events: the fifth is the third record's second.
        #expect(HTTPSink.record(holding: 4, documents: [3, 1, 3]) == 2)
        #expect(HTTPSink.record(holding: 7, documents: [3, 1, 3]) == nil && HTTPSink.record(holding: -1, documents: [3, 1, 3]) == nil)
    }

    @Test func hecSourcetypesFollowTheKindAndTheSchema() throws {
        let native = HTTPSinkSettings(url: "http://127.0.0.1:9/x", format: .splunkHEC, index: "security")
        #expect(native.sourcetype(for: .alert) == "ms:defender:atp:alerts" && native.sourcetype(for: .incident) == "ms365:defender:incident")
        #expect(native.index(for: .incident) == "security")
        let ocsf = HTTPSinkSettings(url: "http://127.0.0.1:9/x", format: .splunkHEC, incidentSourcetype: "mine", shape: RecordShape(schema: .ocsf))
        #expect(ocsf.sourcetype(for: .alert) == "defender:alert:ocsf" && ocsf.sourcetype(for: .incident) == "mine")
        let event = try JSONValue(parsing: Data(try #require(HTTPRequestBody.entry(for: Self.incident(), settings: native)).bytes))
        #expect(event["sourcetype"] == .string("ms365:defender:incident") && event["fields"]?["kind"] == .string("incident"))
        let elastic = HTTPSinkSettings(url: "http://127.0.0.1:9/_bulk", format: .elasticsearchBulk)
        #expect(
            elastic.index(for: .alert) == "defender-alerts" && elastic.index(for: .incident) == "defender-incidents" && elastic.operation == .index)
    }

    @Test func syslogSendsOneMessagePerDocumentAndTheKindsApart() throws {
        let address = try SyslogAddress.parse("tcp://127.0.0.1:601").get()
        var settings = SyslogSettings(address: address, message: SyslogMessage(hostname: "h"))
        settings.shape = RecordShape(schema: .ocsf, evidence: .split)
        let sink = SyslogSink(settings: settings)
        let messages = try #require(sink.messages(for: Self.graphAlert()))
        #expect(messages.count == 2)
        for message in messages {
            let text = String(decoding: message, as: UTF8.self)
            let start = try #require(text.range(of: "] {")).upperBound
            let body = try JSONValue(parsing: "{" + String(text[start...]))
            #expect(body["class_uid"] == .number("2004"))
        }
        let incident = String(decoding: try #require(sink.messages(for: Self.incident())).first ?? [], as: UTF8.self)
        #expect(incident.contains(" incident-updated [defender@32473 incidentId=\"29\"") && incident.contains(#""class_uid":2005"#))
        #expect(sink.messages(for: Self.notJSON()) == nil)
    }

    @Test func theJournalAndCEFTellAnIncidentFromAnAlert() throws {
        let incident = try Self.incident()
        let fields = JournalSink.fields(for: incident)
        #expect(
            fields.contains("MESSAGE_ID=\(JournalSink.incidentMessageID)") && fields.contains("DEFENDER_INCIDENT_ID=29")
                && fields.contains("DEFENDER_KIND=incident"))
        #expect(
            fields.contains {
                $0.hasPrefix("MESSAGE=[high] Multi-stage incident involving Execution & Command and control on one endpoint (incident 29)")
            })
        #expect(fields.contains { $0.hasPrefix("DEFENDER_INCIDENT_JSON={") } && !fields.contains { $0.hasPrefix("DEFENDER_ALERT_") })
        let alertFields = JournalSink.fields(for: try Self.graphAlert())
        #expect(alertFields.contains("MESSAGE_ID=\(JournalSink.messageID)") && alertFields.contains("DEFENDER_KIND=alert"))
        let cef = CEFMessage.line(for: incident)
        #expect(
            cef.hasPrefix(
                "CEF:0|Microsoft|Defender XDR|1.0|incident|Multi-stage incident involving Execution & Command and control on one endpoint|8|"),
            "\(cef)")
        #expect(cef.contains("cs2Label=IncidentId cs2=29") && !cef.contains("cs1Label=AlertId"))
    }

    @Test(arguments: [
        ("file", "path = \"a.jsonl\"\nformat = \"envelope\"\nschema = \"ecs\"", "sink.schema", "cannot be written with format = \"envelope\""),
        ("stdout", "format = \"summary\"\nevidence = \"split\"", "sink.evidence", "cannot be written with format = \"summary\""),
        ("syslog", "address = \"tcp://127.0.0.1:601\"\nformat = \"cef\"\nschema = \"ocsf\"", "sink.schema", "a CEF line is a schema of its own"),
        ("http", "url = \"https://s.example\"\nevidence = \"split\"", "sink.evidence", "format = \"json\" (one document per request) cannot carry"),
        ("http", "url = \"https://s.example\"\ninclude_original = true", "sink.include_original", "schema = \"ecs\" or \"ocsf\" only"),
        ("http", "url = \"https://s.example\"\ndata_stream = true", "sink.data_stream", "elasticsearch-bulk"),
        ("http", "url = \"https://s.example\"\npipeline = \"p\"", "sink.pipeline", "elasticsearch-bulk"),
        ("http", "url = \"https://s.example\"\nincident_index = \"x\"", "sink.incident_index", "splunk-hec and elasticsearch-bulk only"),
        ("http", "url = \"https://s.example\"\nformat = \"ndjson\"\nschema = \"xml\"", "sink.schema", "ocsf"),
        ("journal", "schema = \"ecs\"", "sink.schema", "unknown key"),
    ])
    func shapesASinkCannotCarryAreRefused(type: String, keys: String, key: String, phrase: String) throws {
        let fixture = ConfigFixture()
        let errors = fixture.errors(ConfigFixture.sink(type, named: "s", keys))
        let error = try #require(errors.first { $0.key == key }, "\(errors)")
        #expect(error.message.contains(phrase), "\(error.message)")
    }

    @Test func theShapeIsRead() throws {
        let fixture = ConfigFixture()
        let configuration = try fixture.load(
            ConfigFixture.sink(
                "syslog", named: "s", "address = \"tcp://127.0.0.1:601\"\nschema = \"ocsf\"\nevidence = \"split\"\ninclude_original = true"))
        let shape = RecordShape(schema: .ocsf, evidence: .split, includeOriginal: true)
        #expect(configuration.sinks.first?.shape == shape)
        guard case .syslog(let settings)? = configuration.sinks.first?.kind else { Issue.record("not a syslog sink"); return }
        #expect(settings.shape == shape)
    }
}
