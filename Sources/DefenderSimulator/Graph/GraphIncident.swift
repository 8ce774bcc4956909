import OrderedJSON
import Timekeeping

/// A Microsoft Graph `security/incidents` incident made of the simulated alerts that share an
/// `incidentId`, as they are now: an alert that changes changes its incident. The members and
/// their order are those of Microsoft Graph's "List incidents" example of 2026 (no
/// `@odata.type` per incident; `summary`, `lastModifiedBy`, `resolvingComment` and
/// `priorityScore` came in January 2026), the vocabulary that of the "incident resource type"
/// page (`microsoft-graph-docs-contrib`, `api-reference/v1.0/api/security-list-incidents.md` and
/// `resources/security-incident.md`); `Tests/Fixtures/graph-incidents-page.json`.
enum GraphIncident {
    /// The incident `id` of `alerts` (Graph views, at least one), with its alerts when
    /// `expand` (`$expand=alerts`).
    static func make(id: String, alerts: [JSONValue], expand: Bool) -> JSONValue {
        func times(_ name: String) -> [(text: String, time: Timestamp)] {
            alerts.compactMap { alert in alert[name]?.stringValue.flatMap { text in Timestamp(parsing: text).map { (text, $0) } } }
        }
        let tenant = alerts.first?["tenantId"]?.stringValue ?? ""
        let statuses = alerts.map { $0["status"]?.stringValue ?? "" }
        let resolved = statuses.allSatisfy { $0 == "resolved" }
        let status = resolved ? "resolved" : (statuses.contains("inProgress") ? "inProgress" : "active")
        // Classified once every alert is: the verdict of the first that has one.
        let verdict = { (name: String) -> JSONValue in
            resolved ? alerts.lazy.compactMap { $0[name]?.stringValue }.first.map { .string($0) } ?? .null : .null
        }
        var members: [(String, JSONValue)] = [
            ("id", .string(id)),
            ("tenantId", .string(tenant)),
            ("status", .string(status)),
            ("incidentWebUrl", .string("https://security.microsoft.com/incident2/\(id)/overview?tid=\(tenant)")),
            ("redirectIncidentId", .null),
            ("displayName", .string(displayName(alerts))),
            ("createdDateTime", times("createdDateTime").min { $0.time < $1.time }.map { .string($0.text) } ?? .null),
            ("lastUpdateDateTime", times("lastUpdateDateTime").max { $0.time < $1.time }.map { .string($0.text) } ?? .null),
            ("assignedTo", alerts.lazy.compactMap { $0["assignedTo"]?.stringValue }.first.map { .string($0) } ?? .null),
            ("classification", verdict("classification")),
            ("determination", verdict("determination")),
            ("severity", .string(severities.last { rank in alerts.contains { $0["severity"]?.stringValue == rank } } ?? "unknown")),
            ("customTags", .array([])),
            ("systemTags", .array([])),
            ("description", .null),
            ("lastModifiedBy", .null),
            ("resolvingComment", .null),
            ("summary", .null),
            // "null ... the value of the score is pending calculation".
            ("priorityScore", .null),
            ("comments", .array([])),
        ]
        if expand { members.append(("alerts", .array(alerts))) }
        return .object(members)
    }

    /// Graph's alert severities, lowest first.
    private static let severities = ["unknown", "informational", "low", "medium", "high"]

    /// As Defender names them: after the alert for one alert, else the kinds of activity
    /// ("Multi-stage incident involving Execution & Command and control on one endpoint").
    static func displayName(_ alerts: [JSONValue]) -> String {
        let devices = Set(
            alerts.compactMap { alert -> String? in
                guard case .array(let evidence)? = alert["evidence"] else { return nil }
                return evidence.lazy.compactMap { $0["mdeDeviceId"]?.stringValue }.first
            })
        let place = devices.count > 1 ? "on multiple endpoints" : "on one endpoint"
        var categories: [String] = []
        for category in alerts.compactMap({ $0["category"]?.stringValue }).map(words) where !categories.contains(category) {
            categories.append(category)
        }
        guard alerts.count > 1, categories.count > 1 else {
            return "\(alerts.first?["title"]?.stringValue ?? "Incident") \(place)"
        }
        return "Multi-stage incident involving \(categories.prefix(2).joined(separator: " & ")) \(place)"
    }

    /// `"CommandAndControl"` → `"Command and control"`.
    private static func words(_ name: String) -> String {
        var text = ""
        for character in name {
            if character.isUppercase, !text.isEmpty { text += " " + character.lowercased() } else { text.append(character) }
        }
        return text
    }
}
