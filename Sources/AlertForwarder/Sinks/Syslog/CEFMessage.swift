import OrderedJSON
import Timekeeping

/// One alert as an ArcSight Common Event Format line (CEF 0), for `format = "cef"`:
///
///     CEF:0|Microsoft|Defender for Endpoint|1.0|<detectorId or category>|<title>|<0-10>|<extensions>
///
/// (a Graph alert: its `productName` after "Microsoft ", such as `Defender for Office 365`, as
/// the product; its fields under MDE's names, see ``AlertFields``).
/// Severity: High 8, Medium 5, Low 3, Informational 1, anything else 0 (ArcSight's bands:
/// 0–3 low, 4–6 medium, 7–8 high). Extensions, each only when the alert has the field:
/// `rt` (lastUpdateTime), `start` (firstEventTime), `end` (lastEventTime), all in epoch
/// milliseconds; `dvchost` (computerDnsName), `deviceExternalId` (machineId), `externalId`
/// (id), `act` (created or updated), `msg` (description), `cat` (category), and the labelled
/// `cs1` AlertId, `cs2` IncidentId, `cs3` Status, `cs4` Tenant, `cs5` DetectionSource;
/// `duser` (relatedUser as `DOMAIN\user`); with `includeJSON`, `cs6` AlertJson is the whole
/// alert as Defender returned it. An incident: product `Defender XDR`, device event class
/// `incident`, name its `displayName`, its id in `cs2` IncidentId (no `cs1`).
/// Header fields escape `\` and `|`; extension values escape `\`, `=` and line breaks (`\n`,
/// `\r`), as the CEF specification requires; in both, any other control character, line
/// separator or bidirectional control is written `\uXXXX` (``PrintableText``), so none
/// reaches a SIEM's parser or an analyst's terminal raw.
public enum CEFMessage {
    /// The CEF line for `record` (no line end).
    public static func line(for record: OutboxRecord, includeJSON: Bool = false) -> String {
        let fields = AlertFields(payload: record.payloadBytes)
        let isIncident = record.kind == .incident
        // An incident's device event class is `incident`: a SIEM tells the kinds apart by it.
        let signature = isIncident ? "incident" : fields["detectorId"] ?? fields["category"] ?? "alert"
        // A Graph alert names the service that raised it (Defender for Office 365, Identity...).
        let product =
            isIncident ? "Defender XDR" : fields.product.map { $0.hasPrefix("Microsoft ") ? String($0.dropFirst(10)) : $0 } ?? "Defender for Endpoint"
        let name = isIncident ? fields["displayName"] ?? "Defender incident" : fields["title"] ?? "Defender alert"
        let header = [
            "CEF:0", "Microsoft", header(product), "1.0", header(signature), header(name),
            String(severity(fields["severity"] ?? "")),
        ]
        var extensions: [(String, String)] = []
        for (key, member) in [("rt", "lastUpdateTime"), ("start", "firstEventTime"), ("end", "lastEventTime")] {
            if let text = fields[member], let time = Timestamp(parsing: text) { extensions.append((key, String(time.ticks / 10_000))) }
        }
        for (key, member) in [("dvchost", "computerDnsName"), ("deviceExternalId", "machineId"), ("externalId", "id")] {
            if let value = fields[member] { extensions.append((key, value)) }
        }
        extensions.append(("act", record.event))
        for (key, member) in [("duser", "relatedUser"), ("msg", "description"), ("cat", "category")] {
            if let value = fields[member] { extensions.append((key, value)) }
        }
        let labelled: [(String, String, String?)] = [
            ("cs1", "AlertId", isIncident ? nil : record.alertID), ("cs2", "IncidentId", isIncident ? record.alertID : fields["incidentId"]),
            ("cs3", "Status", fields["status"]),
            ("cs4", "Tenant", record.tenant), ("cs5", "DetectionSource", fields["detectionSource"]),
            ("cs6", "AlertJson", includeJSON ? record.payload : nil),
        ]
        for (key, label, value) in labelled {
            guard let value else { continue }
            extensions.append((key + "Label", label))
            extensions.append((key, value))
        }
        return header.joined(separator: "|") + "|" + extensions.map { "\($0.0)=\(extensionValue($0.1))" }.joined(separator: " ")
    }

    /// CEF severity (0-10) of a Defender severity.
    static func severity(_ severity: String) -> Int {
        switch severity.lowercased() {
        case "high": 8
        case "medium": 5
        case "low": 3
        case "informational": 1
        default: 0
        }
    }

    /// A header field: `\` and `|` escaped; a line break would end the event, so it is a
    /// space; other control characters, line separators and bidirectional controls (see
    /// ``PrintableText``) are written `\uXXXX`.
    static func header(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "|": escaped += "\\|"
            case "\n", "\r", "\r\n": escaped += " "
            default: escaped += PrintableText.escaped(String(character))
            }
        }
        return escaped
    }

    /// An extension value: `\`, `=` and line breaks escaped (`\n`, `\r`) as the CEF
    /// specification says; other control characters, line separators and bidirectional
    /// controls (see ``PrintableText``) written `\uXXXX`, which a CEF reader keeps as text.
    static func extensionValue(_ value: String) -> String {
        var escaped = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": escaped += "\\\\"
            case "=": escaped += "\\="
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            default:
                if PrintableText.isUnsafe(scalar) {
                    escaped += PrintableText.unicodeEscape(scalar)
                } else {
                    escaped.unicodeScalars.append(scalar)
                }
            }
        }
        return escaped
    }
}
