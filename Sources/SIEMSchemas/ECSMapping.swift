import OrderedJSON
import Timekeeping

/// Defender records as Elastic Common Schema documents (`schema = "ecs"`), following the field
/// choices of Elastic's own `m365_defender` integration (its `alert` ingest pipeline): the
/// alert's update time as `@timestamp`, `event.kind` `alert`, `event.severity` 21/47/73/99,
/// `message` the description, `event.category` from the evidence types, the MITRE techniques
/// and the category under `threat.*`. What ECS has no field for goes under `defender.alert`
/// (`defender.incident`) with Defender's own member names; the README's ECS section is this
/// file as a table, field by field.
public enum ECSMapping {
    /// The ECS version the documents are written to (and tested against: its `ecs_flat.yml`).
    public static let version = "9.4.0"

    /// An ECS field copied from a member: MDE's name, Graph's name (nil: that API has none).
    struct Row {
        var field: String
        var mde: String?
        var graph: String?
        var isDate = false
    }

    /// The fields copied as they are. Dates that do not parse are left out (their member stays
    /// under `defender.*`).
    static let alertRows = [
        Row(field: "event.id", mde: "id", graph: "id"),
        Row(field: "event.created", mde: "alertCreationTime", graph: "createdDateTime", isDate: true),
        Row(field: "event.start", mde: "firstEventTime", graph: "firstActivityDateTime", isDate: true),
        Row(field: "event.end", mde: "lastEventTime", graph: "lastActivityDateTime", isDate: true),
        Row(field: "event.url", mde: nil, graph: "alertWebUrl"),
        Row(field: "event.provider", mde: "detectionSource", graph: "serviceSource"),
        Row(field: "message", mde: "description", graph: "description"),
        Row(field: "rule.id", mde: "detectorId", graph: "detectorId"),
        Row(field: "rule.name", mde: "title", graph: "title"),
        Row(field: "rule.category", mde: "category", graph: "category"),
        Row(field: "threat.group.name", mde: "threatFamilyName", graph: "threatFamilyName"),
        Row(field: "cloud.account.id", mde: "aadTenantId", graph: "tenantId"),
    ]

    static let incidentRows = [
        Row(field: "event.id", mde: nil, graph: "id"),
        Row(field: "event.created", mde: nil, graph: "createdDateTime", isDate: true),
        Row(field: "event.url", mde: nil, graph: "incidentWebUrl"),
        Row(field: "message", mde: nil, graph: "displayName"),
        Row(field: "cloud.account.id", mde: nil, graph: "tenantId"),
    ]

    /// Members read into ECS fields other than by a row (the rest go under `defender.*`).
    static let alertMembersUsed: Set = [
        "severity", "lastUpdateTime", "lastUpdateDateTime", "mitreTechniques", "computerDnsName",
        "machineId", "relatedUser", "productName", "incidentId",
    ]
    static let incidentMembersUsed: Set = ["severity", "lastUpdateDateTime", "customTags", "incidentId"]

    /// `event.severity` of a Defender severity, as Elastic's integration sets it (informational
    /// and low 21, medium 47, high 73, critical 99; Elastic Security's risk bands).
    static func severityScore(_ severity: String?) -> Int64? {
        switch severity?.lowercased() {
        case "informational", "low": 21
        case "medium": 47
        case "high": 73
        case "critical": 99
        default: nil
        }
    }

    /// `event.category` of an evidence kind (Elastic's mapping of Graph's evidence types).
    static func category(_ kind: EvidenceEntity.Kind) -> String? {
        switch kind {
        case .device: "host"
        case .user: "iam"
        case .process: "process"
        case .file: "file"
        case .ip, .url: "network"
        case .registry: "registry"
        case .other: nil
        }
    }

    /// The documents for `record`: one, or with `split`, one per evidence entity (one when it
    /// has none). `original` adds the record's JSON as `event.original`.
    public static func documents(for record: DefenderRecord, split: Bool, original: Bool) -> [JSONValue] {
        let entities = record.kind == .alert ? EvidenceEntity.all(of: record) : []
        guard split, !entities.isEmpty else {
            return [document(for: record, entities: entities, splitIndex: nil, original: original)]
        }
        return entities.indices.map { index in
            document(for: record, entities: [entities[index]], splitIndex: (index, entities.count), original: original)
        }
    }

    private static func document(
        for record: DefenderRecord, entities: [EvidenceEntity], splitIndex: (Int, Int)?,
        original: Bool
    ) -> JSONValue {
        var builder = DocumentBuilder()
        builder.set("@timestamp", record.updateTime)
        builder.set("ecs.version", version)
        builder.set("event.kind", "alert")
        builder.set("event.module", "defender_alertd")
        builder.set("event.dataset", "defender_alertd.\(record.kind.rawValue)")
        builder.set("event.action", record.event)
        builder.set("event.severity", severityScore(record.text(mde: "severity", graph: "severity")))
        builder.set("event.ingested", record.receivedAt)
        let rows = record.kind == .alert ? alertRows : incidentRows
        for row in rows {
            guard let value = record.text(mde: row.mde, graph: row.graph) else { continue }
            if row.isDate, Timestamp(parsing: value) == nil { continue }
            builder.set(row.field, value)
        }
        if builder.document.at("message") == nil {
            builder.set("message", record.text(mde: "title", graph: record.kind == .alert ? "title" : "displayName"))
        }
        if let start = epochTicks(record.text(mde: "firstEventTime", graph: "firstActivityDateTime")),
            let end = epochTicks(record.text(mde: "lastEventTime", graph: "lastActivityDateTime")), end >= start, record.kind == .alert
        {
            builder.set("event.duration", (end - start) * 100)
        }
        builder.set("observer.vendor", "Microsoft")
        builder.set("observer.product", record.text(mde: nil, graph: "productName") ?? record.productName)

        switch record.kind {
        case .alert: alert(record, entities: entities, into: &builder)
        case .incident: incident(record, into: &builder)
        }

        builder.set("defender.tenant", record.tenant)
        builder.set("defender.kind", record.kind.rawValue)
        builder.set("defender.incident_id", record.text(mde: "incidentId", graph: record.kind == .alert ? "incidentId" : "id"))
        let used = Set(rows.compactMap { record.isGraph ? $0.graph : $0.mde })
            .union(record.kind == .alert ? alertMembersUsed : incidentMembersUsed)
            .union(splitIndex == nil ? [] : ["evidence"])
        builder.set("defender.\(record.kind.rawValue)", record.rest(without: used))
        if let (index, count) = splitIndex, let entity = entities.first {
            builder.set("defender.evidence", entity.original.forNamespace)
            builder.set("defender.evidence_index", Int64(index))
            builder.set("defender.evidence_count", Int64(count))
        }
        if original { builder.set("event.original", record.original) }
        return builder.document
    }

    private static func alert(_ record: DefenderRecord, entities: [EvidenceEntity], into builder: inout DocumentBuilder) {
        let kinds = entities.compactMap { category($0.kind) }
        let categories = kinds.isEmpty ? ["intrusion_detection"] : kinds.sorted()
        builder.set("event.category", strings: categories)
        builder.set("event.type", strings: Set(categories.map { $0 == "registry" ? "access" : "info" }).sorted())
        setTechniques(record.document["mitreTechniques"]?.strings ?? [], into: &builder)
        builder.set("threat.tactic.name", strings: [record.text(mde: "category", graph: "category")].compactMap { $0 })

        // The alert's own device and user (MDE names them at the top; Graph in its evidence),
        // then the first entity of each kind.
        let device = EvidenceEntity.device(of: record, entities: entities)
        if let device {
            builder.set("host.name", device.hostName)
            builder.set("host.hostname", device.hostName)
            builder.set("host.id", device.id)
            builder.set("host.os.platform", device.osPlatform?.lowercased())
            builder.set("host.os.version", device.osVersion)
            builder.set("host.ip", strings: device.ips.filter(ValueRules.isIPAddress))
        }
        var user = entities.first { $0.user != nil }?.user ?? entities.first { $0.process?.user != nil }?.process?.user
        if user == nil, let related = record.document["relatedUser"] {
            user = EvidenceEntity.User(name: related["userName"]?.stringValue, domain: related["domainName"]?.stringValue)
        }
        if let user { set(user, at: "user", into: &builder) }
        if let process = entities.first(where: { $0.process != nil })?.process {
            builder.set("process.pid", process.pid)
            builder.set("process.command_line", process.commandLine)
            builder.set("process.start", date(process.start))
            set(process.image, name: "process.name", executable: "process.executable", hashes: "process.hash", into: &builder)
            builder.set("process.parent.pid", process.parentPID)
            builder.set("process.parent.start", date(process.parentStart))
            set(
                process.parentImage, name: "process.parent.name", executable: "process.parent.executable", hashes: "process.parent.hash",
                into: &builder)
            if let owner = process.user { builder.set("process.user.name", owner.name) }
        }
        if let file = entities.first(where: { $0.file != nil })?.file {
            builder.set("file.name", file.name)
            builder.set("file.directory", file.directory)
            builder.set("file.path", file.path)
            builder.set("file.hash.sha1", file.sha1)
            builder.set("file.hash.sha256", file.sha256)
            builder.set("file.size", file.size)
        }
        builder.set("url.original", entities.first { $0.url != nil }?.url)
        builder.set("destination.ip", entities.compactMap(\.ip).first(where: ValueRules.isIPAddress))
        if let registry = entities.first(where: { $0.registry != nil })?.registry {
            builder.set("registry.key", registry.key)
            builder.set("registry.hive", registry.hive)
            builder.set("registry.value", registry.valueName)
            builder.set("registry.data.strings", strings: [registry.value].compactMap { $0 })
            builder.set("registry.data.type", registry.valueType)
        }
        builder.set("related.hosts", strings: [device?.hostName].compactMap { $0 } + entities.flatMap(\.hostNames))
        builder.set("related.ip", strings: ((device?.ips ?? []) + entities.flatMap(\.ips)).filter(ValueRules.isIPAddress))
        builder.set("related.user", strings: [user?.name].compactMap { $0 } + entities.flatMap(\.userNames))
        builder.set("related.hash", strings: entities.flatMap(\.hashes))
    }

    private static func incident(_ record: DefenderRecord, into builder: inout DocumentBuilder) {
        builder.set("event.category", strings: ["intrusion_detection"])
        builder.set("event.type", strings: ["info"])
        builder.set("tags", strings: record.document["customTags"]?.strings ?? [])
        // What the incident's alerts (`$expand=alerts`) name, for searching across them.
        let alerts = record.incidentAlerts
        let entities = alerts.flatMap(EvidenceEntity.all(of:))
        let techniques = alerts.flatMap { $0.document["mitreTechniques"]?.strings ?? [] }
        setTechniques(techniques, into: &builder)
        builder.set("threat.tactic.name", strings: alerts.compactMap { $0.text(mde: nil, graph: "category") })
        builder.set("related.hosts", strings: entities.flatMap(\.hostNames))
        builder.set("related.ip", strings: entities.flatMap(\.ips).filter(ValueRules.isIPAddress))
        builder.set("related.user", strings: [record.text(mde: nil, graph: "assignedTo")].compactMap { $0 } + entities.flatMap(\.userNames))
        builder.set("related.hash", strings: entities.flatMap(\.hashes))
    }

    /// `threat.technique.id` (`T1003.001` gives `T1003`) and `.subtechnique.id`, under the
    /// MITRE ATT&CK framework; nothing when there are none.
    private static func setTechniques(_ techniques: [String], into builder: inout DocumentBuilder) {
        guard !techniques.isEmpty else { return }
        builder.set("threat.framework", "MITRE ATT&CK")
        builder.set("threat.technique.id", strings: techniques.map(ValueRules.parentTechnique))
        builder.set("threat.technique.subtechnique.id", strings: techniques.filter { $0.contains(".") })
    }

    private static func set(_ user: EvidenceEntity.User, at prefix: String, into builder: inout DocumentBuilder) {
        builder.set("\(prefix).name", user.name)
        builder.set("\(prefix).domain", user.domain)
        builder.set("\(prefix).id", user.sid ?? user.directoryID)
        builder.set("\(prefix).full_name", user.displayName)
        if let principal = user.principalName, principal.contains("@") { builder.set("\(prefix).email", principal) }
    }

    private static func set(_ file: EvidenceEntity.File?, name: String, executable: String, hashes: String, into builder: inout DocumentBuilder) {
        guard let file else { return }
        builder.set(name, file.name)
        builder.set(executable, file.path)
        builder.set("\(hashes).sha1", file.sha1)
        builder.set("\(hashes).sha256", file.sha256)
    }

    private static func date(_ text: String?) -> String? {
        text.flatMap { Timestamp(parsing: $0) == nil ? nil : $0 }
    }

    private static func epochTicks(_ text: String?) -> Int64? {
        text.flatMap { Timestamp(parsing: $0)?.ticks }
    }
}
