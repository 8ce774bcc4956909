import Crypto
import DefenderAPI
import Foundation
import NIOCore
import PostgresNIO
import Timekeeping

/// Admission in PostgreSQL: one transaction per page, as embedded, with the page's keys,
/// alerts and queue rows each written by one statement (arrays bound whole), not a round
/// trip per alert.
struct PostgresAdmission: AdmissionStore {
    let database: StateDatabase
    /// In a group: admission of a tenant needs its lease, at the epoch held.
    let fence: GroupFence?
    /// Where the bytes of the alerts admitted go once committed, for this daemon's sinks.
    let recent: RecentPayloads

    func watermark(of stream: RecordStream) async throws(StateError) -> Timestamp? {
        let rows = try await database.query("watermark read", "SELECT watermark FROM cursor WHERE tenant = \(stream.key)")
        return try decodeFirst(rows, as: Int64.self).map { Timestamp(ticks: $0) }
    }

    func admit(
        stream: RecordStream, alerts: [Alert], rejected: [RejectedElement], forward: ForwardMode, sinks: [String], storesHeadline: Bool,
        now: Date, watermark: WatermarkMove
    ) async throws(StateError) -> Admission {
        guard !alerts.isEmpty || !rejected.isEmpty else { return Admission() }
        // The lease, the outbox and the quarantine are the tenant's; the watermark and keys the stream's.
        let (tenant, key) = (stream.tenant, stream.key)
        let receivedAt = Timestamp(now).writtenWith(0).description
        let recordedAt = Int64(now.timeIntervalSince1970)
        let logger = database.logger
        let fence = self.fence
        let epoch = fence?.leases.epoch(of: tenant)
        if fence != nil, epoch == nil {
            throw StateError(
                .leaseLost,
                "tenant \(tenant): this daemon no longer holds its lease; nothing of this page is admitted (the member that holds it reads it)")
        }
        let (admission, added) = try await database.transaction("admission") { connection in
            if let fence, let epoch {
                // The lease row is locked until the commit: a new holder cannot take it in between.
                let current = try await connection.query(
                    """
                    SELECT 1 FROM lease WHERE tenant = \(tenant) AND holder = \(fence.member) AND holder_incarnation = \(fence.incarnation)
                        AND epoch = \(epoch) AND expires_at > now() FOR SHARE
                    """, logger: logger
                ).collect()
                guard !current.isEmpty else {
                    throw StateError(
                        .leaseLost,
                        "tenant \(tenant): the lease of epoch \(epoch) is no longer this daemon's; nothing of this page is admitted (the member that holds it reads it)"
                    )
                }
            }
            var admission = Admission()
            var added: [(id: Int64, payload: [UInt8])] = []
            for element in rejected {
                let digest = ByteBuffer(bytes: SHA256.hash(data: element.bytes))
                let inserted = try await connection.query(
                    """
                    INSERT INTO quarantine (tenant, raw, raw_digest, reason, quarantined_at)
                    VALUES (\(tenant), \(ByteBuffer(data: element.bytes)), \(digest), \(element.reason), \(receivedAt))
                    ON CONFLICT DO NOTHING RETURNING id
                    """, logger: logger
                ).collect()
                if !inserted.isEmpty { admission.quarantined.append(element) }
            }
            guard !alerts.isEmpty else { return (admission, added) }
            let keys = alerts.map { dedupKey(of: $0, forward: forward) }
            let inserted = Set(
                try await connection.array(
                    of: String.self,
                    """
                    WITH added AS (
                        INSERT INTO seen (tenant, key, alert_id, recorded_at)
                        SELECT \(key), k, a, \(recordedAt) FROM unnest(\(keys)::text[], \(alerts.map(\.id))::text[]) AS t(k, a)
                        ON CONFLICT DO NOTHING RETURNING key)
                    SELECT array_agg(key) FROM added
                    """, logger: logger))
            // With `forward = "updates"`, an alert with another version recorded before is
            // `updated`: keys "id" and "id|ticks" are a range of the primary key ('|' < '}').
            var earlier = Set<String>()
            if forward == .updates, !inserted.isEmpty {
                let ids = Array(Set(alerts.filter { inserted.contains(dedupKey(of: $0, forward: forward)) }.map(\.id)))
                for try await id in try await connection.query(
                    """
                    SELECT DISTINCT s.alert_id FROM unnest(\(ids)::text[]) AS a(id)
                    JOIN seen s ON s.tenant = \(key) AND s.key >= a.id AND s.key < a.id || '}' AND s.alert_id = a.id
                    WHERE NOT (s.key = ANY(\(Array(inserted))::text[]))
                    """, logger: logger
                ).decode(String.self) {
                    earlier.insert(id)
                }
            }
            var fresh = inserted
            var queued: [(alert: Alert, event: String)] = []
            for alert in alerts {
                let key = dedupKey(of: alert, forward: forward)
                guard fresh.remove(key) != nil else {
                    admission.duplicates += 1
                    continue
                }
                let updated = forward == .updates && earlier.contains(alert.id)
                earlier.insert(alert.id)  // a later version in the same page is an update
                queued.append((alert, updated ? "updated" : "created"))
                admission.queuedForSinks += sinks.count
                admission.newAlerts += 1
                admission.admitted.append(alert)
            }
            if !queued.isEmpty, !sinks.isEmpty {
                let ids = try await Self.queue(
                    queued, stream: stream, receivedAt: receivedAt, sinks: Array(Set(sinks)).sorted(),
                    storesHeadline: storesHeadline, on: connection, logger: logger)
                // One id per alert, or the ids cannot be matched to the bytes kept in memory.
                guard ids.count == queued.count else {
                    throw StateError(
                        .incompatible,
                        "PostgreSQL answered \(ids.count) outbox ids for \(queued.count) alerts queued: the schema is not this version's; nothing of this page is admitted"
                    )
                }
                added = zip(ids, queued).map { ($0, [UInt8]($1.alert.bytes)) }
            }
            if let newest = watermark.newest(of: alerts) {
                try await connection.run(
                    """
                    INSERT INTO cursor (tenant, watermark, watermark_text, updated_at) VALUES (\(key), \(newest.ticks), \(newest.writtenWith(7).description), \(receivedAt))
                    ON CONFLICT (tenant) DO UPDATE SET
                        watermark = greatest(cursor.watermark, excluded.watermark),
                        watermark_text = CASE WHEN excluded.watermark > cursor.watermark THEN excluded.watermark_text ELSE cursor.watermark_text END,
                        updated_at = excluded.updated_at
                    """, logger: logger)
            }
            return (admission, added)
        }
        // Committed: the sinks may take them from memory.
        recent.add(added)
        return admission
    }

    /// Writes each alert once, with its headline decoded here when a sink shows it (else its
    /// columns stay NULL), and a row per sink; returns the alerts' outbox ids, in order (taken
    /// from the sequence in the order of the page, so that sinks read them in that order).
    private static func queue(
        _ queued: [(alert: Alert, event: String)], stream: RecordStream, receivedAt: String, sinks: [String], storesHeadline: Bool,
        on connection: PostgresConnection, logger: Logger
    ) async throws -> [Int64] {
        let (tenant, kind) = (stream.tenant, stream.kind.rawValue)
        let headlines = HeadlineColumns(storesHeadline ? queued.map { AlertHeadline($0.alert) } : [], count: queued.count)
        return try await connection.array(
            of: Int64.self,
            """
            WITH numbered AS MATERIALIZED (
                SELECT nextval('outbox_id_seq') AS id, a, e, sv, ti, ho, st, lu, p, n
                FROM unnest(\(queued.map(\.alert.id))::text[], \(queued.map(\.event))::text[], \(headlines.severity)::text[],
                            \(headlines.title)::text[], \(headlines.host)::text[], \(headlines.status)::text[],
                            \(headlines.lastUpdateTime)::text[], \(queued.map { Bytea($0.alert.bytes) })::bytea[])
                    WITH ORDINALITY AS t(a, e, sv, ti, ho, st, lu, p, n)),
            added AS (
                INSERT INTO outbox (id, tenant, kind, alert_id, event, received_at, severity, title, host, status, last_update_time, payload)
                SELECT id, \(tenant), \(kind), a, e, \(receivedAt), nullif(sv, ''), nullif(ti, ''), nullif(ho, ''), nullif(st, ''), nullif(lu, ''), p
                FROM numbered
                RETURNING id),
            pending AS (
                INSERT INTO outbox_pending (sink, id, tenant) SELECT s, added.id, \(tenant) FROM added CROSS JOIN unnest(\(sinks)::text[]) AS s)
            SELECT array_agg(id ORDER BY n) FROM numbered
            """, logger: logger)
    }

    func isKnown(tenant: String, alert: Alert, forward: ForwardMode) async throws(StateError) -> Bool {
        let key = dedupKey(of: alert, forward: forward)
        let stream = RecordStream(tenant: tenant, kind: alert.kind).key
        return try await !database.query("dedup key read", "SELECT 1 FROM seen WHERE tenant = \(stream) AND key = \(key)").isEmpty
    }

    func reset(tenant: String) async throws(StateError) {
        let logger = database.logger
        try await database.transaction("reset") { connection in
            let keys = RecordStream.keys(of: tenant)
            try await connection.run("DELETE FROM cursor WHERE tenant = ANY(\(keys))", logger: logger)
            try await connection.run("DELETE FROM seen WHERE tenant = ANY(\(keys))", logger: logger)
            try await connection.run("DELETE FROM reconciliation WHERE tenant = ANY(\(keys))", logger: logger)
        }
    }

    func pruneDedupKeys(now: Date) async throws(StateError) -> Int {
        let localNow = Int64(now.timeIntervalSince1970)
        let retention = StateStore.dedupRetention.components.seconds
        let rows = try await database.query(
            "dedup key pruning",
            """
            WITH removed AS (
                DELETE FROM seen USING cursor
                WHERE seen.tenant = cursor.tenant AND seen.recorded_at < least(\(localNow), cursor.watermark / 10000000) - \(retention)
                RETURNING 1)
            SELECT count(*) FROM removed
            """)
        return Int(try decodeFirst(rows, as: Int64.self) ?? 0)
    }

    func tenants() async throws(StateError) -> [TenantState] {
        let rows = try await database.query(
            "tenant summary",
            """
            SELECT coalesce(c.tenant, k.tenant), c.watermark_text, coalesce(k.n, 0)
            FROM cursor c FULL JOIN (SELECT tenant, count(*) AS n FROM seen GROUP BY tenant) k ON k.tenant = c.tenant
            ORDER BY 1
            """)
        do {
            return try rows.map { row in
                let (tenant, watermark, keys) = try row.decode((String, String?, Int64).self)
                return TenantState(tenant: tenant, watermark: watermark, dedupKeys: Int(keys))
            }
        } catch {
            throw StateDatabase.stateError(error, doing: "tenant summary")
        }
    }
}

/// The first column of the first row, if there is a row.
func decodeFirst<T: PostgresDecodable>(_ rows: [PostgresRow], as type: T.Type) throws(StateError) -> T? {
    guard let row = rows.first else { return nil }
    do { return try row.decode(T.self) } catch {
        throw StateError(.incompatible, "PostgreSQL answered a value of another type than expected (\(T.self)): the schema is not this version's")
    }
}
