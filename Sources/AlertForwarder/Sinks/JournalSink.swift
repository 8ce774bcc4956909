import Foundation
import Systemd

/// One journal entry per alert, findable with `journalctl MESSAGE_ID=...`.
public struct JournalSink: AlertSink {
    /// The `MESSAGE_ID` of every alert entry.
    public static let messageID = "b5d1e2c74a0f4e6c9d3a8f1b27c6e950"

    public init() {}

    public func send(_ records: [OutboxRecord]) async throws(SinkError) -> [SinkRejection] {
        guard JournalWriter.isAvailable() else {
            throw SinkError("journald is not listening on \(JournalWriter.socketPath)")
        }
        var rejected: [SinkRejection] = []
        for record in records {
            let headline = record.headline
            let fields = [
                "MESSAGE=[\(headline.severity)] \(headline.title) on \(headline.host ?? "unknown host") (\(record.alertID))",
                "MESSAGE_ID=\(Self.messageID)",
                "PRIORITY=\(headline.syslogSeverity)",
                "SYSLOG_IDENTIFIER=defender-alertd",
                "DEFENDER_ALERT_ID=\(record.alertID)",
                "DEFENDER_SEVERITY=\(headline.severity)",
                "DEFENDER_STATUS=\(headline.status ?? "")",
                "DEFENDER_TENANT=\(record.tenant)",
                "DEFENDER_EVENT=\(record.event)",
                "DEFENDER_ALERT_JSON=\(record.payload)",
            ]
            let result = JournalWriter.send(fields)
            switch -result {
            case 0: continue
            case E2BIG, EMSGSIZE:
                // Larger than journald takes: sending it again cannot help.
                rejected.append(SinkRejection(recordID: record.id, reason: "journald refused the entry as too large (\(String(cString: strerror(-result))))"))
            default:
                throw SinkError("sd_journal_sendv failed: \(String(cString: strerror(-result)))")
            }
        }
        return rejected
    }
}
