import DefenderAPI
import Foundation
import GRDB
import Timekeeping

/// The embedded admission: per tenant the watermark (`cursor`) and the dedup keys (`seen`),
/// and the quarantine's rows, written in the transaction that appends the page's new alerts
/// to the outbox log.
struct EmbeddedAdmission: AdmissionStore {
    let database: EmbeddedDatabase

    func watermark(of stream: RecordStream) async throws(StateError) -> Timestamp? {
        try await database.read { db in
            try Int64.fetchOne(db, sql: "SELECT watermark FROM cursor WHERE tenant = ?", arguments: [stream.key]).map { Timestamp(ticks: $0) }
        }
    }

    func admit(
        stream: RecordStream, alerts: [Alert], rejected: [RejectedElement], forward: ForwardMode, sinks: [String], storesHeadline: Bool,
        now: Date, watermark: WatermarkMove
    ) async throws(StateError) -> Admission {
        guard !alerts.isEmpty || !rejected.isEmpty else { return Admission() }
        let receivedAt = Timestamp(now).writtenWith(0).description
        let recordedAt = Int64(now.timeIntervalSince1970)
        let log = database.log
        // The watermark and keys are the stream's; the outbox and the quarantine the tenant's.
        let tenant = stream.key
        return try await database.writeQueuing { db, undo in
            var admission = Admission()
            for element in rejected {
                try db.execute(
                    sql: "INSERT OR IGNORE INTO quarantine (tenant, raw, reason, quarantined_at) VALUES (?, ?, ?, ?)",
                    arguments: [stream.tenant, element.bytes, element.reason, receivedAt])
                if db.changesCount > 0 { admission.quarantined.append(element) }
            }
            var queued: [OutboxLog.Entry] = []
            queued.reserveCapacity(sinks.isEmpty ? 0 : alerts.count)
            admission.admitted.reserveCapacity(alerts.count)
            // Prepared once per transaction (SQLite parses each statement once, not per alert).
            let remember = try DedupKeyInsert(db)
            defer { remember.close() }
            // Keys of other versions of the alert ("id", "id|ticks") sort from "id" to before
            // "id}" ('|' < '}'): a range of the primary key; alert_id makes the match exact.
            let seenBefore = try db.cachedStatement(
                sql: "SELECT 1 FROM seen WHERE tenant = ? AND key >= ? AND key < ? AND alert_id = ? AND key <> ? LIMIT 1")
            for alert in alerts {
                let key = dedupKey(of: alert, forward: forward)
                guard try remember.insert(tenant: tenant, key: key, alertID: alert.id, recordedAt: recordedAt) else {
                    admission.duplicates += 1
                    continue
                }
                let updated =
                    try forward == .updates
                    && (Bool.fetchOne(seenBefore, arguments: [tenant, alert.id, alert.id + "}", alert.id, key]) ?? false)
                if !sinks.isEmpty {
                    queued.append(
                        OutboxLog.Entry(
                            tenant: stream.tenant, alertID: alert.id, event: updated ? "updated" : "created", receivedAt: receivedAt,
                            headline: storesHeadline ? AlertHeadline(alert) : nil, payload: alert.bytes, sinks: sinks,
                            kind: stream.kind))
                }
                admission.queuedForSinks += sinks.count
                admission.newAlerts += 1
                admission.admitted.append(alert)
            }
            try EmbeddedOutbox.queue(queued, in: db, log: log, undo: &undo)
            // The poller decides (``WatermarkProgress``: complete windows only, never past the
            // server's present).
            if let newest = watermark.newest(of: alerts) {
                try db.execute(
                    sql: """
                        INSERT INTO cursor (tenant, watermark, watermark_text, updated_at) VALUES (?, ?, ?, ?)
                        ON CONFLICT (tenant) DO UPDATE SET
                            watermark = max(watermark, excluded.watermark),
                            watermark_text = CASE WHEN excluded.watermark > watermark THEN excluded.watermark_text ELSE watermark_text END,
                            updated_at = excluded.updated_at
                        """, arguments: [tenant, newest.ticks, newest.writtenWith(7).description, receivedAt])
            }
            return admission
        }
    }

    func isKnown(tenant: String, alert: Alert, forward: ForwardMode) async throws(StateError) -> Bool {
        try await database.read { db in
            try Bool.fetchOne(
                db, sql: "SELECT 1 FROM seen WHERE tenant = ? AND key = ?",
                arguments: [RecordStream(tenant: tenant, kind: alert.kind).key, dedupKey(of: alert, forward: forward)]) ?? false
        }
    }

    func reset(tenant: String) async throws(StateError) {
        try await database.write { db in
            for key in RecordStream.keys(of: tenant) {
                try db.execute(sql: "DELETE FROM cursor WHERE tenant = ?", arguments: [key])
                try db.execute(sql: "DELETE FROM seen WHERE tenant = ?", arguments: [key])
                try db.execute(sql: "DELETE FROM reconciliation WHERE tenant = ?", arguments: [key])
            }
        }
    }

    /// A scan of the whole table (no index by age: see migration v3), about 70 ms per million keys.
    func pruneDedupKeys(now: Date) async throws(StateError) -> Int {
        let localNow = Int64(now.timeIntervalSince1970)
        let retention = StateStore.dedupRetention.components.seconds
        return try await database.write { db in
            var removed = 0
            for row in try Row.fetchAll(db, sql: "SELECT tenant, watermark FROM cursor") {
                let newestAlert = (row["watermark"] as Int64) / 10_000_000
                try db.execute(
                    sql: "DELETE FROM seen WHERE tenant = ? AND recorded_at < ?",
                    arguments: [row["tenant"] as String, min(localNow, newestAlert) - retention])
                removed += db.changesCount
            }
            return removed
        }
    }

    func tenants() async throws(StateError) -> [TenantState] {
        try await database.read { db in
            let watermarks = try Row.fetchAll(db, sql: "SELECT tenant, watermark_text FROM cursor")
            let keys = try Row.fetchAll(db, sql: "SELECT tenant, count(*) AS n FROM seen GROUP BY tenant")
            var states: [String: TenantState] = [:]
            for row in watermarks {
                let name: String = row["tenant"]
                states[name] = TenantState(tenant: name, watermark: row["watermark_text"], dedupKeys: 0)
            }
            for row in keys {
                let name: String = row["tenant"]
                states[name, default: TenantState(tenant: name, watermark: nil, dedupKeys: 0)].dedupKeys = row["n"]
            }
            return states.values.sorted { $0.tenant < $1.tenant }
        }
    }
}
