import Foundation
import Systemd

/// One journal entry per alert, findable with `journalctl MESSAGE_ID=...`; incidents have a
/// `MESSAGE_ID` of their own.
public struct JournalSink: AlertSink {
    /// The `MESSAGE_ID` of every alert entry.
    public static let messageID = "b5d1e2c74a0f4e6c9d3a8f1b27c6e950"
    /// The `MESSAGE_ID` of every incident entry.
    public static let incidentMessageID = "3c8e0f5a9d2b4c71a6e4b0d8f2c9e317"

    public init() {}

    public func send(_ records: [OutboxRecord]) async throws(SinkError) -> [SinkRejection] {
        guard JournalWriter.isAvailable() else {
            throw SinkError("journald is not listening on \(JournalWriter.socketPath)")
        }
        var rejected: [SinkRejection] = []
        for record in records {
            let fields = Self.fields(for: record)
            let result = JournalWriter.send(fields)
            switch -result {
            case 0: continue
            case E2BIG, EMSGSIZE:
                // Larger than journald takes: sending it again cannot help.
                rejected.append(
                    SinkRejection(recordID: record.id, reason: "journald refused the entry as too large (\(String(cString: strerror(-result))))"))
            default:
                throw SinkError("sd_journal_sendv failed: \(String(cString: strerror(-result)))")
            }
        }
        return rejected
    }

    /// The entry's fields. An alert: `DEFENDER_ALERT_ID` and `DEFENDER_ALERT_JSON`; an
    /// incident: `DEFENDER_INCIDENT_ID` and `DEFENDER_INCIDENT_JSON`, with its own `MESSAGE_ID`.
    /// Both carry `DEFENDER_KIND`.
    static func fields(for record: OutboxRecord) -> [String] {
        let headline = record.headline
        let isIncident = record.kind == .incident
        let noun = isIncident ? "incident" : "alert"
        let place = isIncident ? "" : " on \(headline.host ?? "unknown host")"
        return [
            "MESSAGE=[\(headline.severity)] \(headline.title)\(place) (\(isIncident ? "incident " : "")\(record.alertID))",
            "MESSAGE_ID=\(isIncident ? incidentMessageID : messageID)",
            "PRIORITY=\(headline.syslogSeverity)",
            "SYSLOG_IDENTIFIER=defender-alertd",
            "DEFENDER_\(noun.uppercased())_ID=\(record.alertID)",
            "DEFENDER_KIND=\(record.kind.rawValue)",
            "DEFENDER_SEVERITY=\(headline.severity)",
            "DEFENDER_STATUS=\(headline.status ?? "")",
            "DEFENDER_TENANT=\(record.tenant)",
            "DEFENDER_EVENT=\(record.event)",
            "DEFENDER_\(noun.uppercased())_JSON=\(record.payload)",
        ]
    }
}
