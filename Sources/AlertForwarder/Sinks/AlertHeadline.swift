import OrderedJSON
import Timekeeping

/// The few fields of an alert a person reads first, taken from its JSON: what the journal
/// sink's `MESSAGE` and the `summary` record format show.
struct AlertHeadline {
    var severity: String
    var title: String
    /// The device (`computerDnsName`), when the alert names one.
    var host: String?
    var status: String?
    /// `lastUpdateTime` as the API wrote it.
    var lastUpdateTime: String?

    init(payload: [UInt8]) {
        let fields: [String?] = payload.withUnsafeBufferPointer { bytes in
            var scanner = JSONScanner(bytes)
            guard let ranges = try? scanner.members(["severity", "title", "computerDnsName", "status", "lastUpdateTime"]) else {
                return [nil, nil, nil, nil, nil]
            }
            return ranges.map { $0.flatMap { scanner.string(at: $0) } }
        }
        severity = fields[0] ?? "UnSpecified"
        title = fields[1] ?? "Defender alert"
        host = fields[2]
        status = fields[3]
        lastUpdateTime = fields[4]
    }

    /// `lastUpdateTime` to the second (`2026-11-25T18:38:22Z`), or `-` when it is missing or
    /// not a timestamp.
    /// The syslog severity of the alert's, for the journal's `PRIORITY` and the syslog sink's
    /// PRI: High 2 (crit), Medium 3 (err), Low 4 (warning), Informational 5 (notice),
    /// anything else 6 (info).
    var syslogSeverity: Int { Self.syslogSeverity(of: severity) }

    static func syslogSeverity(of severity: String) -> Int {
        switch severity.lowercased() {
        case "high": 2
        case "medium": 3
        case "low": 4
        case "informational": 5
        default: 6
        }
    }

    var time: String {
        guard let text = lastUpdateTime, let timestamp = Timestamp(parsing: text) else { return "-" }
        return timestamp.writtenWith(0).description
    }
}

/// One line a person can read, for `format = "summary"`:
/// `2026-11-25T18:38:22Z [tenant] created High "Suspicious access to LSASS service" ws-hr-0031 da6393…`
enum SummaryLine {
    static func line(for record: OutboxRecord, showsTenant: Bool) -> String {
        let headline = AlertHeadline(payload: record.payloadBytes)
        var fields = [headline.time]
        if showsTenant { fields.append(printable(record.tenant)) }
        fields += [record.event, printable(headline.severity), quoted(headline.title), printable(headline.host ?? "-"), printable(record.alertID)]
        return fields.joined(separator: " ")
    }

    /// A title as a JSON string literal: quotes, backslashes and every control character are
    /// escaped, so a line break in a title cannot start a forged line.
    static func quoted(_ text: String) -> String {
        JSONValue.string(text).serialized
    }

    /// A single field: no spaces or control characters inside (they would shift the columns).
    static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0 == " " || $0.properties.generalCategory == .control || $0 == "\"" }) || text.isEmpty else {
            return text
        }
        return quoted(text)
    }
}
