import Foundation
import OrderedJSON
import SIEMSchemas
import TestSupport
import Testing

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
        DefenderRecord(
            kind: kind, tenant: "contoso", event: event, receivedAt: "2026-12-06T10:00:00.000Z", document: document,
            original: document.serialized)
    }

    /// Every record of the fixtures of both APIs, and odd ones: no evidence, null and
    /// non-object evidence, a device name that is no host name, values of the wrong type.
    static func allRecords() throws -> [DefenderRecord] {
        var records = try (fixture("alerts-page.json") + fixture("graph-alerts-v2-page.json")).map { record($0) }
        records += try fixture("graph-alerts-v2-page.json").map { record($0, event: "updated") }
        records += try fixture("graph-incidents-page.json").map { record($0, kind: .incident, event: "updated") }
        let odd = try JSONValue(
            parsing: #"""
                {"id":"da1","title":"Odd","severity":"UnSpecified","status":"Weird","computerDnsName":"host with spaces!","machineId":7,
                 "lastUpdateTime":"not a time","alertCreationTime":"2026-13-45","mitreTechniques":"T1059","evidence":[null,3,{"entityType":"Ip","ipAddress":"not-an-ip"},
                 {"entityType":"Process","processId":"12x","fileName":null},{"entityType":"Registry","registryKey":"HKLM\\Run","registryValue":"x"}]}
                """#)
        records.append(record(odd))
        let bare = try JSONValue(
            parsing: ##"{"@odata.type":"#microsoft.graph.security.alert","id":"g1","lastUpdateDateTime":"2026-12-06T09:00:00Z","evidence":null}"##)
        records.append(record(bare, event: "updated"))
        let incident = try JSONValue(
            parsing:
                #"{"id":"77","displayName":"Bare incident","status":"redirected","severity":"informational","assignedTo":null,"lastUpdateDateTime":"2026-12-06T09:00:00Z"}"#
        )
        records.append(record(incident, kind: .incident))
        return records
    }

    /// Every record in every shape the schema has (inline and split, with and without the
    /// original), checked by the schema's own definitions.
    @Test(
        .enabled(if: SchemaValidator.isAvailable, "the reference schemas are not in ../shared/schemas (or DEFENDER_SCHEMAS_DIR)"),
        arguments: ["ecs", "ocsf"])
    func recordsConformToTheSchema(_ schema: String) throws {
        var documents: [String] = []
        for record in try Self.allRecords() {
            for split in [false, true] {
                let made =
                    schema == "ecs"
                    ? ECSMapping.documents(for: record, split: split, original: split)
                    : OCSFMapping.events(for: record, split: split, original: split)
                documents += made.map(\.serialized)
            }
        }
        let problems = try SchemaValidator.problems(schema, documents)
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
        for expected in [
            "not_an_attribute: not an attribute", "severity_id: 7 is not in the enum", "finding_info.uid: required and missing",
            "evidences[0]: needs at least one of", "py-ocsf-models refused it",
        ] {
            #expect(ocsfProblems.contains { $0.contains(expected) }, "no problem names \(expected): \(ocsfProblems)")
        }
    }

    // MARK: The README says what the mappings do

    static func readme() throws -> String {
        try String(contentsOfFile: SchemaValidator.packageRoot + "/README.md", encoding: .utf8)
    }

    static func section(_ name: String, of readme: String) throws -> Substring {
        let begin = try #require(readme.range(of: "<!-- \(name):begin -->"), "README.md has no \(name) markers")
        let end = try #require(readme.range(of: "<!-- \(name):end -->"))
        return readme[begin.upperBound..<end.lowerBound]
    }

    /// The leaf paths of a document (objects flattened, arrays of objects looked into).
    static func paths(_ value: JSONValue, _ prefix: String = "") -> Set<String> {
        switch value {
        case .object(let members):
            return members.reduce(into: Set<String>()) { $0.formUnion(paths($1.1, prefix.isEmpty ? $1.0 : prefix + "." + $1.0)) }
        case .array(let elements) where elements.contains(where: { if case .object = $0 { true } else { false } }):
            return elements.reduce(into: Set<String>()) { $0.formUnion(paths($1, prefix)) }
        default:
            return [prefix]
        }
    }

    @Test func theECSTableNamesEveryFieldTheMappingWrites() throws {
        let table = try Self.section("ecs-fields", of: Self.readme())
        var fields = Set<String>()
        for record in try Self.allRecords() {
            for split in [false, true] {
                for document in ECSMapping.documents(for: record, split: split, original: true) { fields.formUnion(Self.paths(document)) }
            }
        }
        // Under `defender.alert` and `defender.incident` are Defender's own members, named as a group.
        let named = fields.filter { !$0.hasPrefix("defender.alert.") && !$0.hasPrefix("defender.incident.") && !$0.hasPrefix("defender.evidence.") }
        let missing = named.filter { !table.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "README.md's ECS table does not name \(missing)")
    }

    @Test func theOCSFTableNamesEveryAttributeTheMappingWrites() throws {
        let table = try Self.section("ocsf-attributes", of: Self.readme())
        var attributes = Set<String>()
        for record in try Self.allRecords() {
            for split in [false, true] {
                for event in OCSFMapping.events(for: record, split: split, original: true) {
                    guard case .object(let members) = event else { continue }
                    // `metadata` and `finding_info` are named by their own attributes.
                    attributes.formUnion(members.map(\.0).filter { $0 != "metadata" && $0 != "finding_info" })
                    for (name, value) in members where name == "metadata" || name == "finding_info" {
                        attributes.formUnion(value.keys.map { name + "." + $0 })
                    }
                }
            }
        }
        // Table rows name an object's attributes after its first as `.name`.
        let missing = attributes.filter { attribute in
            !table.contains("`\(attribute)`") && !(attribute.contains(".") && table.contains("`.\(attribute.split(separator: ".").last!)`"))
        }.sorted()
        #expect(missing.isEmpty, "README.md's OCSF table does not name \(missing)")
    }

    @Test func theExampleRecordsAreWhatTheMappingsMake() throws {
        let examples = try Self.section("schema-examples", of: Self.readme())
        let blocks = examples.components(separatedBy: "```json\n").dropFirst().map { $0.components(separatedBy: "\n```")[0] }
        #expect(blocks.count == 2)
        let record = try Self.record(Self.fixture("graph-alerts-v2-page.json")[0])
        let made = [
            ECSMapping.documents(for: record, split: false, original: false)[0], OCSFMapping.events(for: record, split: false, original: false)[0],
        ]
        for (block, document) in zip(blocks, made) {
            #expect(try JSONValue(parsing: block) == document, "README.md's example is stale: \(document.serialized.prefix(300))")
        }
    }
}
