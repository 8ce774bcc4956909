import Foundation
import OrderedJSON
import SIEMSchemas
import Testing
import TestSupport

/// Defender records in ECS and OCSF (issue 25), checked against the schemas' own definitions
/// by `Tests/Clients/validate_schemas.py`, and field by field where a mapping makes a choice.
@Suite("SIEM schemas")
struct SIEMSchemaTests {
    static func fixture(_ name: String) throws -> [JSONValue] {
        let page = try JSONValue(parsing: Data(contentsOf: URL(fileURLWithPath: SchemaValidator.packageRoot + "/Tests/Fixtures/" + name)))
        guard case .array(let values)? = page["value"] else { return [] }
        return values
    }

    static func record(_ document: JSONValue, kind: DefenderRecord.Kind = .alert, event: String = "created") -> DefenderRecord {
        DefenderRecord(kind: kind, tenant: "contoso", event: event, receivedAt: "2026-12-06T10:00:00.000Z", document: document,
                       original: document.serialized)
    }

    /// Every record of the fixtures of both APIs, and odd ones: no evidence, null and
    /// non-object evidence, a device name that is no host name, values of the wrong type.
    static func allRecords() throws -> [DefenderRecord] {
        var records = try (fixture("alerts-page.json") + fixture("graph-alerts-v2-page.json")).map { record($0) }
        records += try fixture("graph-alerts-v2-page.json").map { record($0, event: "updated") }
        records += try fixture("graph-incidents-page.json").map { record($0, kind: .incident, event: "updated") }
        let odd = try JSONValue(parsing: #"""
        {"id":"da1","title":"Odd","severity":"UnSpecified","status":"Weird","computerDnsName":"host with spaces!","machineId":7,
         "lastUpdateTime":"not a time","alertCreationTime":"2026-13-45","mitreTechniques":"T1059","evidence":[null,3,{"entityType":"Ip","ipAddress":"not-an-ip"},
         {"entityType":"Process","processId":"12x","fileName":null},{"entityType":"Registry","registryKey":"HKLM\\Run","registryValue":"x"}]}
        """#)
        records.append(record(odd))
        let bare = try JSONValue(parsing: ##"{"@odata.type":"#microsoft.graph.security.alert","id":"g1","lastUpdateDateTime":"2026-12-06T09:00:00Z","evidence":null}"##)
        records.append(record(bare, event: "updated"))
        let incident = try JSONValue(parsing: #"{"id":"77","displayName":"Bare incident","status":"redirected","severity":"informational","assignedTo":null,"lastUpdateDateTime":"2026-12-06T09:00:00Z"}"#)
        records.append(record(incident, kind: .incident))
        return records
    }

    @Test(.enabled(if: SchemaValidator.isAvailable, "the reference schemas are not in ../shared/schemas (or DEFENDER_SCHEMAS_DIR)"))
    func ecsDocumentsConformToECS() throws {
        var documents: [String] = []
        for record in try Self.allRecords() {
            for split in [false, true] {
                documents += ECSMapping.documents(for: record, split: split, original: split).map(\.serialized)
            }
        }
        let problems = try SchemaValidator.problems("ecs", documents)
        #expect(problems.isEmpty, "\(problems.prefix(30).joined(separator: "\n"))")
    }

    @Test(.enabled(if: SchemaValidator.isAvailable, "the reference schemas are not in ../shared/schemas (or DEFENDER_SCHEMAS_DIR)"))
    func ocsfEventsConformToOCSF() throws {
        var documents: [String] = []
        for record in try Self.allRecords() {
            for split in [false, true] {
                documents += OCSFMapping.events(for: record, split: split, original: split).map(\.serialized)
            }
        }
        let problems = try SchemaValidator.problems("ocsf", documents)
        #expect(problems.isEmpty, "\(problems.prefix(30).joined(separator: "\n"))")
    }

    /// The validator itself catches what it is there to catch (a check that cannot fail
    /// proves nothing): a field ECS does not have, a wrong type, an array where one value
    /// goes, a value outside the allowed ones; an OCSF attribute the class lacks, a missing
    /// required one, an enum value it does not define, an unmet constraint.
    @Test(.enabled(if: SchemaValidator.isAvailable, "the reference schemas are not in ../shared/schemas (or DEFENDER_SCHEMAS_DIR)"))
    func theValidatorRefusesWhatTheSchemasRefuse() throws {
        let record = try Self.record(Self.fixture("graph-alerts-v2-page.json")[1])
        var ecs = try #require(ECSMapping.documents(for: record, split: false, original: false).first)
        ecs.set("hostname_typo", .string("x"))
        ecs.set("event", .object([("kind", .string("nonsense")), ("severity", .string("high")), ("id", .array([.string("a")]))]))
        let ecsProblems = try SchemaValidator.problems("ecs", [ecs.serialized])
        for expected in ["hostname_typo is not an ECS field", "event.kind: 'nonsense'", "event.severity", "event.id: an array"] {
            #expect(ecsProblems.contains { $0.contains(expected) }, "no problem names \(expected): \(ecsProblems)")
        }
        var ocsf = try #require(OCSFMapping.events(for: record, split: false, original: false).first)
        ocsf.set("not_an_attribute", .bool(true))
        ocsf.set("severity_id", .int(7))
        ocsf.set("finding_info", .object([("title", .string("no uid"))]))
        ocsf.set("evidences", .array([.object([])]))
        let ocsfProblems = try SchemaValidator.problems("ocsf", [ocsf.serialized])
        for expected in ["not_an_attribute: not an attribute", "severity_id: 7 is not in the enum", "finding_info.uid: required and missing",
                         "evidences[0]: needs at least one of", "py-ocsf-models refused it"] {
            #expect(ocsfProblems.contains { $0.contains(expected) }, "no problem names \(expected): \(ocsfProblems)")
        }
    }
}
