import DefenderAPI
import Foundation
import GRDB
import Timekeeping

/// The embedded outbox: the records' bytes in the ``OutboxLog``, written once for every sink;
/// in SQLite the log's committed end and, per sink, its position in the log and how many
/// records wait for it.
struct EmbeddedOutbox: OutboxStore {
    let database: EmbeddedDatabase

    /// The committed end of the outbox log.
    static func end(_ db: Database) throws -> LogPosition {
        guard let row = try Row.fetchOne(db, sql: "SELECT segment, byte_offset, sequence FROM outbox_end") else {
            throw StateError(.corrupt, "the outbox_end row is missing")
        }
        return position(row)
    }

    /// A position from a row of `outbox_end` or `sink_position`.
    private static func position(_ row: Row) -> LogPosition {
        LogPosition(segment: row["segment"], offset: row["byte_offset"], sequence: row["sequence"])
    }

    /// Inside a write transaction: appends the alerts to the log (on disk when it returns),
    /// gives a sink seen for the first time its position at the old end, counts the alerts for
    /// each sink and records the new end. `undo` is where the log goes back to if the
    /// transaction then fails.
    static func queue(_ alerts: [OutboxLog.Entry], in db: Database, log: OutboxLog, undo: inout LogPosition?) throws {
        guard !alerts.isEmpty else { return }
        let end = try end(db)
        var counts: [String: Int] = [:]
        var sinks: (named: [String], distinct: [String]) = ([], [])
        for index in alerts.indices {
            // A record counts once for a sink, as its reader does, even if named twice. (The
            // alerts of one admission share their list of sinks: deduplicated once.)
            if alerts[index].sinks != sinks.named { sinks = (alerts[index].sinks, Array(Set(alerts[index].sinks))) }
            for sink in sinks.distinct { counts[sink, default: 0] += 1 }
        }
        let start = try db.cachedStatement(
            sql: "INSERT OR IGNORE INTO sink_position (sink, segment, byte_offset, sequence, pending) VALUES (?, ?, ?, ?, 0)")
        let count = try db.cachedStatement(sql: "UPDATE sink_position SET pending = pending + ? WHERE sink = ?")
        for (sink, added) in counts {
            try start.execute(arguments: [sink, end.segment, end.offset, end.sequence])
            try count.execute(arguments: [added, sink])
        }
        undo = end
        let newEnd = try log.append(alerts, after: end)
        try db.execute(
            sql: "UPDATE outbox_end SET segment = ?, byte_offset = ?, sequence = ?", arguments: [newEnd.segment, newEnd.offset, newEnd.sequence])
    }

    /// Moves the rows of the `outbox` table of a version before the outbox log into the log,
    /// in order and in steps (each its own transaction), then drops the table. Rows of one
    /// alert for several sinks become one record for those sinks.
    static func convertOutboxTable(of database: EmbeddedDatabase) throws(StateError) {
        guard try database.readNow({ db in try db.tableExists("outbox") }) else { return }
        while true {
            let done: Bool = try database.writeQueuingNow { db, undo in
                let rows = try Row.fetchAll(
                    db, sql: "SELECT id, sink, tenant, alert_id, event, received_at, payload FROM outbox ORDER BY id LIMIT 10000")
                guard let lastID = rows.last?["id"] as Int64? else {
                    try db.execute(sql: "DROP TABLE outbox")
                    return true
                }
                var entries: [OutboxLog.Entry] = []
                for row in rows {
                    let payload = Data((row["payload"] as String).utf8)
                    let entry = OutboxLog.Entry(
                        tenant: row["tenant"], alertID: row["alert_id"], event: row["event"], receivedAt: row["received_at"],
                        payload: payload, sinks: [row["sink"]])
                    if let last = entries.last, last.tenant == entry.tenant, last.alertID == entry.alertID, last.event == entry.event,
                        last.receivedAt == entry.receivedAt, last.payload == entry.payload, !last.sinks.contains(entry.sinks[0])
                    {
                        entries[entries.count - 1].sinks += entry.sinks
                    } else {
                        entries.append(entry)
                    }
                }
                try queue(entries, in: db, log: database.log, undo: &undo)
                try db.execute(sql: "DELETE FROM outbox WHERE id <= ?", arguments: [lastID])
                return false
            }
            if done { return }
        }
    }

    func pending(sink: String, limit: Int) async throws(StateError) -> OutboxBatch {
        let log = database.log
        // One read transaction: the log is read up to the end it commits, off the pool.
        return try await database.read { db in
            // The dead-letter index (sink, requeue) finds them; nearly always none.
            let requeued = try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT id, tenant, kind, alert_id, event, received_at, payload FROM dead_letter WHERE sink = ? AND requeue = 1 ORDER BY id LIMIT ?
                        """), arguments: [sink, max(1, limit)]
            ).map { row in
                OutboxRecord(
                    id: row["id"], sink: sink, tenant: row["tenant"], alertID: row["alert_id"], event: row["event"],
                    receivedAt: row["received_at"], payloadBytes: [UInt8](row["payload"] as Data), kind: RecordKind(stored: row["kind"]))
            }
            if !requeued.isEmpty { return OutboxBatch(sink: sink, records: requeued, receipt: .requeued) }
            let end = try Self.end(db)
            guard
                let row = try Row.fetchOne(
                    db.cachedStatement(sql: "SELECT segment, byte_offset, sequence FROM sink_position WHERE sink = ?"),
                    arguments: [sink])
            else {
                return OutboxBatch(sink: sink, records: [], receipt: .log(start: end, next: end))
            }
            let position = Self.position(row)
            let (records, next) = try log.read(sink: sink, from: position, to: end, limit: limit)
            return OutboxBatch(sink: sink, records: records, receipt: .log(start: position, next: next))
        }
    }

    func confirm(_ batch: OutboxBatch, rejected: [SinkRejection], now: Date) async throws(StateError) {
        guard batch.advances else { return }
        let failedAt = Timestamp(now).description
        switch batch.receipt {
        case .requeued:
            try await confirmRequeued(batch, rejected: rejected, failedAt: failedAt)
        case .rows:
            throw StateError(.incompatible, "a batch read from PostgreSQL cannot be confirmed in the embedded state")
        case .log(let start, let next):
            try await database.write { db in
                try db.execute(
                    sql: """
                        UPDATE sink_position SET segment = ?, byte_offset = ?, sequence = ?, pending = max(0, pending - ?)
                        WHERE sink = ? AND sequence = ?
                        """, arguments: [next.segment, next.offset, next.sequence, batch.records.count, batch.sink, start.sequence])
                guard db.changesCount > 0, !rejected.isEmpty else { return }
                let insert = try db.cachedStatement(
                    sql: """
                        INSERT INTO dead_letter (sink, tenant, kind, alert_id, event, received_at, payload, reason, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """)
                for rejection in rejected {
                    guard let record = batch.records.first(where: { $0.id == rejection.recordID }) else { continue }
                    try insert.execute(arguments: [
                        batch.sink, record.tenant, record.kind.rawValue, record.alertID, record.event, record.receivedAt,
                        Data(record.payloadBytes), rejection.reason, failedAt,
                    ])
                }
            }
            if next.segment != start.segment { try await removeDeliveredSegments() }
        }
    }

    /// Confirms a batch of re-queued dead letters. Rows purged meanwhile are simply gone.
    private func confirmRequeued(_ batch: OutboxBatch, rejected: [SinkRejection], failedAt: String) async throws(StateError) {
        let refused = Dictionary(rejected.map { ($0.recordID, $0.reason) }, uniquingKeysWith: { first, _ in first })
        try await database.write { db in
            let delete = try db.cachedStatement(sql: "DELETE FROM dead_letter WHERE id = ? AND sink = ? AND requeue = 1")
            let again = try db.cachedStatement(
                sql: "UPDATE dead_letter SET requeue = 0, reason = ?, failed_at = ? WHERE id = ? AND sink = ? AND requeue = 1")
            for record in batch.records {
                if let reason = refused[record.id] {
                    try again.execute(arguments: [reason, failedAt, record.id, batch.sink])
                } else {
                    try delete.execute(arguments: [record.id, batch.sink])
                }
            }
        }
    }

    /// Deletes the log segments every sink has passed.
    private func removeDeliveredSegments() async throws(StateError) {
        let log = database.log
        try await database.read { db in
            let oldest = min(try Int64.fetchOne(db, sql: "SELECT min(segment) FROM sink_position") ?? Int64.max, try Self.end(db).segment)
            try log.removeSegments(before: oldest)
        }
    }

    func depth() async throws(StateError) -> [String: Int] {
        try await database.read { db in
            var depth: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT sink, pending FROM sink_position WHERE pending > 0") {
                depth[row["sink"]] = row["pending"]
            }
            return depth
        }
    }

    func oldestPending(sink: String) async throws(StateError) -> Date? {
        try await pending(sink: sink, limit: 1).records.first.flatMap { Timestamp(parsing: $0.receivedAt)?.date }
    }

    func drop(except sinks: Set<String>) async throws(StateError) -> Int {
        let dropped = try await database.write { db in
            let placeholders = sinks.map { _ in "?" }.joined(separator: ",")
            let filter = sinks.isEmpty ? "" : "WHERE sink NOT IN (\(placeholders))"
            let arguments = StatementArguments(Array(sinks))
            let count = try Int.fetchOne(db, sql: "SELECT coalesce(sum(pending), 0) FROM sink_position \(filter)", arguments: arguments) ?? 0
            try db.execute(sql: "DELETE FROM sink_position \(filter)", arguments: arguments)
            return count
        }
        try await removeDeliveredSegments()
        return dropped
    }
}
