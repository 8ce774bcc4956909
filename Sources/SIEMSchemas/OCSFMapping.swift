import Foundation
import OrderedJSON
import Timekeeping

/// Defender records as Open Cybersecurity Schema Framework events (`schema = "ocsf"`), OCSF
/// 1.3.0: an alert is a Detection Finding (class 2004), an incident an Incident Finding
/// (2005). What OCSF has no attribute for goes under `unmapped` with Defender's own member
/// names. The README's OCSF section is this file as a table, attribute by attribute.
public enum OCSFMapping {
    /// The OCSF version the events are written to (and tested against, with every later one
    /// up to 1.8.0).
    public static let version = "1.3.0"

    static let detectionFinding: Int64 = 2004
    static let incidentFinding: Int64 = 2005

    /// Members read into attributes (the rest go under `unmapped`), by API.
    static let alertMembersUsed = [
        "id", "title", "description", "severity", "status", "category", "detectorId", "detectionSource",
        "mitreTechniques", "evidence", "incidentId", "computerDnsName", "machineId",
        "alertCreationTime", "lastUpdateTime", "firstEventTime", "lastEventTime", "aadTenantId",
        "createdDateTime", "lastUpdateDateTime", "firstActivityDateTime", "lastActivityDateTime",
        "alertWebUrl", "tenantId", "productName", "serviceSource",
    ]
    static let incidentMembersUsed = [
        "id", "displayName", "description", "severity", "status", "classification", "assignedTo",
        "createdDateTime", "lastUpdateDateTime", "incidentWebUrl", "tenantId", "alerts",
    ]

    /// An OCSF enum attribute's id and caption for a Defender value, from a table of lower-cased
    /// values: `none` when Defender gives none (0 Unknown unless the table says otherwise),
    /// 99 (Other) with Defender's own text for a value the table does not know.
    struct EnumMapping {
        var values: [String: (id: Int64, caption: String)]
        var none: (id: Int64, caption: String) = (0, "Unknown")

        func callAsFunction(_ text: String?) -> (id: Int64, caption: String?) {
            guard let text else { return (none.id, none.caption) }
            guard let known = values[text.lowercased()] else { return (99, text) }
            return (known.id, known.caption)
        }
    }

    /// `severity_id`: Informational 1, Low 2, Medium 3, High 4, Critical 5; none or
    /// `UnSpecified` 0 (Unknown); anything else 99 (Other), its text in `severity`.
    static let severity = EnumMapping(values: [
        "unspecified": (0, "Unknown"), "unknown": (0, "Unknown"), "informational": (1, "Informational"), "low": (2, "Low"),
        "medium": (3, "Medium"), "high": (4, "High"), "critical": (5, "Critical"),
    ])

    /// An alert's `status_id` (Detection Finding): New 1, In Progress 2, Resolved 4.
    static let alertStatus = EnumMapping(values: ["new": (1, "New"), "inprogress": (2, "In Progress"), "resolved": (4, "Resolved")])

    /// An incident's `status_id` (Incident Finding): `active` New 1, `inProgress` In Progress 2,
    /// `awaitingAction` On Hold 3, `resolved` Resolved 4, `redirected` (merged into another
    /// incident) Closed 5.
    static let incidentStatus = EnumMapping(values: [
        "active": (1, "New"), "inprogress": (2, "In Progress"), "awaitingaction": (3, "On Hold"), "resolved": (4, "Resolved"),
        "redirected": (5, "Closed"),
    ])

    /// An incident's `verdict_id` of its `classification`: `falsePositive` 1, `truePositive` 2,
    /// `informationalExpectedActivity` Benign 5, `unknown` or none 0.
    static let verdict = EnumMapping(values: [
        "unknown": (0, "Unknown"), "falsepositive": (1, "False Positive"), "truepositive": (2, "True Positive"),
        "informationalexpectedactivity": (5, "Benign"),
    ])

    /// The events for `record`: one, or with `split`, one per evidence entity (one when it has
    /// none). `original` adds the record's JSON as `raw_data`.
    public static func events(for record: DefenderRecord, split: Bool, original: Bool) -> [JSONValue] {
        switch record.kind {
        case .incident:
            return [incident(record, original: original)]
        case .alert:
            let entities = EvidenceEntity.all(of: record)
            guard split, !entities.isEmpty else { return [alert(record, entities: entities, splitIndex: nil, original: original)] }
            return entities.indices.map { alert(record, entities: [entities[$0]], splitIndex: ($0, entities.count), original: original) }
        }
    }

    // MARK: Detection Finding

    private static func alert(_ record: DefenderRecord, entities: [EvidenceEntity], splitIndex: (Int, Int)?, original: Bool) -> JSONValue {
        let status = record.text(mde: "status", graph: "status")
        var builder = common(
            record, classUID: detectionFinding, className: "Detection Finding",
            closed: alertStatus(status).id == 4, original: original)
        let (statusID, statusCaption) = alertStatus(status)
        builder.set("status_id", statusID)
        builder.set("status", statusCaption)
        builder.set("message", record.text(mde: "title", graph: "title"))
        builder.set("finding_info", findingInfo(record))
        builder.set("metadata.correlation_uid", record.text(mde: "incidentId", graph: "incidentId"))
        if let index = splitIndex { builder.set("metadata.uid", record.versionID + "_" + String(index.0)) }

        let device = EvidenceEntity.device(of: record, entities: entities)
        if let device, let object = self.device(device) {
            // `device` belongs to the host profile, which the event then declares.
            builder.set("metadata.profiles", strings: ["host"])
            builder.set("device", object)
            builder.set("resources", .array([resource(device)]))
        }
        builder.set("evidences", .array(entities.map(evidence)))
        builder.set("observables", .array(observables(device: device, entities: entities)))
        var unmapped = record.rest(without: Set(alertMembersUsed))
        if let (index, count) = splitIndex {
            unmapped.set("evidence_index", .int(index))
            unmapped.set("evidence_count", .int(count))
        }
        builder.set("unmapped", unmapped)
        return builder.document
    }

    /// `finding_info` of an alert: its id, title, description, times, link, category and the
    /// MITRE techniques it names.
    static func findingInfo(_ record: DefenderRecord) -> JSONValue {
        var info = DocumentBuilder()
        info.set("uid", record.text(mde: "id", graph: "id"))
        info.set("title", record.text(mde: "title", graph: "title") ?? "Defender alert")
        info.set("desc", record.text(mde: "description", graph: "description"))
        info.set("created_time", epochMilliseconds(record.text(mde: "alertCreationTime", graph: "createdDateTime")))
        info.set("modified_time", epochMilliseconds(record.text(mde: "lastUpdateTime", graph: "lastUpdateDateTime")))
        info.set("first_seen_time", epochMilliseconds(record.text(mde: "firstEventTime", graph: "firstActivityDateTime")))
        info.set("last_seen_time", epochMilliseconds(record.text(mde: "lastEventTime", graph: "lastActivityDateTime")))
        info.set("src_url", record.text(mde: nil, graph: "alertWebUrl"))
        info.set("types", strings: [record.text(mde: "category", graph: "category")].compactMap { $0 })
        info.set("product_uid", record.text(mde: "detectionSource", graph: "serviceSource"))
        if let detector = record.text(mde: "detectorId", graph: "detectorId") {
            // Defender says only which detector raised it, not how it works: type Unknown.
            var analytic = DocumentBuilder()
            analytic.set("uid", detector)
            analytic.set("name", record.text(mde: "detectionSource", graph: "detectionSource"))
            analytic.set("type_id", Int64(0))
            analytic.set("type", "Unknown")
            info.set("analytic", analytic.document)
        }
        info.set(
            "attacks", .array(attacks(record.document["mitreTechniques"]?.strings ?? [], tactic: record.text(mde: "category", graph: "category"))))
        return info.document
    }

    /// One `attack` per technique: `T1003` as the technique, `T1003.001` as its parent
    /// technique and the sub-technique; the alert's category as the tactic's name.
    private static func attacks(_ techniques: [String], tactic: String?) -> [JSONValue] {
        var seen = Set<String>()
        return techniques.filter { seen.insert($0).inserted }.map { technique in
            var attack = DocumentBuilder()
            attack.set("technique.uid", ValueRules.parentTechnique(technique))
            if technique.contains(".") { attack.set("sub_technique.uid", technique) }
            if let tactic { attack.set("tactic.name", tactic) }
            return attack.document
        }
    }

    // MARK: Incident Finding

    private static func incident(_ record: DefenderRecord, original: Bool) -> JSONValue {
        let (statusID, statusCaption) = incidentStatus(record.text(mde: nil, graph: "status"))
        var builder = common(
            record, classUID: incidentFinding, className: "Incident Finding", closed: statusID == 4 || statusID == 5,
            original: original)
        builder.set("status_id", statusID)
        builder.set("status", statusCaption)
        builder.set("message", record.text(mde: nil, graph: "displayName"))
        builder.set("desc", record.text(mde: nil, graph: "description"))
        builder.set("src_url", record.text(mde: nil, graph: "incidentWebUrl"))
        let (verdictID, verdictCaption) = verdict(record.text(mde: nil, graph: "classification"))
        builder.set("verdict_id", verdictID)
        builder.set("verdict", verdictCaption)
        // OCSF requires an assignee or an assignee group; an incident nobody took has neither,
        // and says so by a group of that name.
        if let assignee = record.text(mde: nil, graph: "assignedTo") {
            builder.set("assignee.name", assignee)
            if ValueRules.isEmailAddress(assignee) { builder.set("assignee.email_addr", assignee) }
        } else {
            builder.set("assignee_group.name", "Unassigned")
        }
        let alerts = record.incidentAlerts
        // One finding per alert of the incident (`$expand=alerts`); the incident itself when it
        // came without them.
        var findings = alerts.map(findingInfo)
        if findings.isEmpty {
            var info = DocumentBuilder()
            info.set("uid", record.text(mde: nil, graph: "id"))
            info.set("title", record.text(mde: nil, graph: "displayName") ?? "Defender incident")
            info.set("desc", record.text(mde: nil, graph: "description"))
            info.set("created_time", epochMilliseconds(record.text(mde: nil, graph: "createdDateTime")))
            info.set("modified_time", epochMilliseconds(record.text(mde: nil, graph: "lastUpdateDateTime")))
            info.set("src_url", record.text(mde: nil, graph: "incidentWebUrl"))
            findings = [info.document]
        }
        builder.set("finding_info_list", .array(findings))
        let entities = alerts.flatMap(EvidenceEntity.all(of:))
        builder.set("observables", .array(observables(device: nil, entities: entities)))
        builder.set("metadata.labels", strings: ["tenant:" + record.tenant] + (record.document["customTags"]?.strings ?? []))
        builder.set("unmapped", record.rest(without: Set(incidentMembersUsed)))
        return builder.document
    }

    // MARK: Shared

    /// What every event has: class, activity, type, severity, time, metadata.
    private static func common(_ record: DefenderRecord, classUID: Int64, className: String, closed: Bool, original: Bool) -> DocumentBuilder {
        var builder = DocumentBuilder()
        // Created, Updated; an update that resolved it closes the finding.
        let activity: (Int64, String) = record.event == "created" ? (1, "Create") : closed ? (3, "Close") : (2, "Update")
        builder.set("activity_id", activity.0)
        builder.set("activity_name", activity.1)
        // No `category_name`: the schema's own caption of 2 differs between its resolved
        // form ("findings") and its category list ("Findings"), and the name is optional.
        builder.set("category_uid", Int64(2))
        builder.set("class_uid", classUID)
        builder.set("class_name", className)
        builder.set("type_uid", classUID * 100 + activity.0)
        builder.set("type_name", "\(className): \(activity.1)")
        let (severityID, severityCaption) = severity(record.text(mde: "severity", graph: "severity"))
        builder.set("severity_id", severityID)
        builder.set("severity", severityCaption)
        builder.set("time", epochMilliseconds(record.updateTime))
        builder.set("metadata.version", version)
        builder.set("metadata.product.name", record.text(mde: nil, graph: "productName") ?? record.productName)
        builder.set("metadata.product.vendor_name", "Microsoft")
        builder.set("metadata.product.feature.name", record.text(mde: nil, graph: "serviceSource"))
        builder.set("metadata.uid", record.versionID)
        builder.set("metadata.original_time", record.updateTime)
        builder.set("metadata.logged_time", epochMilliseconds(record.receivedAt))
        builder.set("metadata.tenant_uid", record.text(mde: "aadTenantId", graph: "tenantId"))
        builder.set("metadata.log_name", record.kind == .alert ? "alerts" : "incidents")
        builder.set("metadata.log_provider", "defender-alertd")
        builder.set("metadata.labels", strings: ["tenant:" + record.tenant])
        if original { builder.set("raw_data", record.original) }
        return builder
    }

    /// A `device`: its host name (`hostname` when it is one by OCSF's rule, else `name`), id,
    /// platform and addresses. Defender does not say what kind of device it is: type Unknown.
    private static func device(_ device: EvidenceEntity.Device) -> JSONValue? {
        guard device.hostName != nil || device.id != nil || !device.ips.isEmpty else { return nil }
        var object = DocumentBuilder()
        object.set("type_id", Int64(0))
        object.set("type", "Unknown")
        if let name = device.hostName {
            object.set(ValueRules.isHostName(name) ? "hostname" : "name", name)
        }
        object.set("uid", device.id)
        object.set("ip", device.ips.first { ValueRules.isIPAddress($0) })
        if let platform = device.osPlatform {
            let lowered = platform.lowercased()
            let type: (Int64, String) =
                lowered.hasPrefix("windows")
                ? (100, "Windows")
                : lowered.hasPrefix("linux")
                    ? (200, "Linux")
                    : lowered.hasPrefix("mac")
                        ? (300, "macOS")
                        : lowered.hasPrefix("ios")
                            ? (301, "iOS")
                            : lowered.hasPrefix("android")
                                ? (201, "Android")
                                : (99, "Other")
            object.set("os.name", platform)
            object.set("os.type_id", type.0)
            object.set("os.type", type.1)
            object.set("os.version", device.osVersion)
        }
        return object.document
    }

    private static func resource(_ device: EvidenceEntity.Device) -> JSONValue {
        var object = DocumentBuilder()
        object.set("uid", device.id)
        object.set("name", device.hostName ?? device.id ?? device.ips.first)
        object.set("type", "Device")
        return object.document
    }

    /// One `evidences` element: the entity in OCSF's objects, and always the entity as
    /// Defender gave it under `data` (registry values and the rest have no object of their own).
    private static func evidence(_ entity: EvidenceEntity) -> JSONValue {
        var object = DocumentBuilder()
        if let device = entity.device.flatMap(device) { object.set("device", device) }
        if let user = entity.user { object.set("user", self.user(user)) }
        if let process = entity.process { object.set("process", self.process(process)) }
        if let file = entity.file.flatMap(file) { object.set("file", file) }
        if let ip = entity.ip, ValueRules.isIPAddress(ip) { object.set("dst_endpoint.ip", ip) }
        if let url = entity.url { object.set("url.url_string", url) }
        object.set("data", entity.original.forNamespace)
        return object.document
    }

    private static func user(_ user: EvidenceEntity.User) -> JSONValue {
        var object = DocumentBuilder()
        object.set("name", user.name ?? user.principalName ?? user.displayName ?? user.sid ?? user.directoryID ?? "unknown")
        object.set("domain", user.domain)
        object.set("uid", user.sid ?? user.directoryID)
        if user.sid != nil { object.set("uid_alt", user.directoryID) }
        object.set("full_name", user.displayName)
        if let principal = user.principalName, ValueRules.isEmailAddress(principal) { object.set("email_addr", principal) }
        return object.document
    }

    private static func process(_ process: EvidenceEntity.Process) -> JSONValue {
        var object = DocumentBuilder()
        object.set("pid", process.pid)
        object.set("cmd_line", process.commandLine)
        object.set("created_time", epochMilliseconds(process.start))
        object.set("name", process.image?.name)
        object.set("file", process.image.flatMap(file))
        if process.parentPID != nil || process.parentImage?.name != nil {
            var parent = DocumentBuilder()
            parent.set("pid", process.parentPID)
            parent.set("created_time", epochMilliseconds(process.parentStart))
            parent.set("name", process.parentImage?.name)
            parent.set("file", process.parentImage.flatMap(file))
            object.set("parent_process", parent.document)
        }
        if let owner = process.user { object.set("user", user(owner)) }
        // OCSF asks for a pid or a uid: the process's own when Defender gave none.
        if process.pid == nil { object.set("uid", process.image?.sha256 ?? process.commandLine ?? process.image?.name ?? "unknown") }
        return object.document
    }

    private static func file(_ file: EvidenceEntity.File) -> JSONValue? {
        guard let name = file.name else { return nil }
        var object = DocumentBuilder()
        object.set("name", name)
        object.set("type_id", Int64(1))
        object.set("type", "Regular File")
        object.set("path", file.path)
        object.set("parent_folder", file.directory)
        object.set("size", file.size)
        let hashes: [(Int64, String, String?)] = [(2, "SHA-1", file.sha1), (3, "SHA-256", file.sha256)]
        object.set(
            "hashes",
            .array(
                hashes.compactMap { id, algorithm, value in
                    guard let value, value.count <= 64 else { return nil }
                    return .object([("algorithm_id", .int(Int(id))), ("algorithm", .string(algorithm)), ("value", .string(value))])
                }))
        return object.document
    }

    /// Observables of the device and the entities: host names, addresses, user names, hashes,
    /// URLs. The resolved schemas this is tested against define only 0 (Unknown) and 99
    /// (Other) as observable types, so each is type 99 with its kind in `type`.
    private static func observables(device: EvidenceEntity.Device?, entities: [EvidenceEntity]) -> [JSONValue] {
        var seen = Set<String>()
        var items: [JSONValue] = []
        func add(_ name: String, _ type: String, _ value: String?) {
            guard let value, !value.isEmpty, seen.insert(name + "\u{0}" + value).inserted else { return }
            items.append(.object([("name", .string(name)), ("type_id", .int(99)), ("type", .string(type)), ("value", .string(value))]))
        }
        add("device.hostname", "Hostname", device?.hostName)
        for entity in entities {
            for name in entity.hostNames { add("evidences.device.hostname", "Hostname", name) }
            for ip in entity.ips { add("evidences.device.ip", "IP Address", ip) }
            for name in entity.userNames { add("evidences.user.name", "User Name", name) }
            for hash in entity.hashes { add("evidences.file.hashes.value", "Hash", hash) }
            add("evidences.url.url_string", "URL String", entity.url)
        }
        return items
    }
}
