import Foundation
import NIOCore
import PostgresNIO

/// Dead letters in PostgreSQL (`dead_letter`); the outbox adds to them when it confirms.
struct PostgresDeadLetters: DeadLetterStore {
    let database: StateDatabase

    func deadLetters(sink: String?) async throws(StateError) -> [DeadLetter] {
        let rows = try await database.query(
            "dead letter list",
            """
            SELECT id, sink, tenant, alert_id, event, reason, failed_at, requeue FROM dead_letter
            WHERE \(sink)::text IS NULL OR sink = \(sink) ORDER BY id
            """)
        return try decode("dead letter list") {
            try rows.map { row in
                let (id, sink, tenant, alertID, event, reason, failedAt, requeue) = try row.decode(
                    (Int64, String, String, String, String, String, String, Bool).self)
                return DeadLetter(
                    id: id, sink: sink, tenant: tenant, alertID: alertID, event: event, reason: reason, failedAt: failedAt,
                    markedForRequeue: requeue)
            }
        }
    }

    func counts() async throws(StateError) -> [String: Int] {
        try await countsByName(database, "dead letter count", "SELECT sink, count(*) FROM dead_letter GROUP BY sink")
    }

    func markForRequeue(sink: String?) async throws(StateError) -> Int {
        let logger = database.logger
        return try await database.transaction("dead letter re-queue") { connection in
            try await connection.run(
                "UPDATE dead_letter SET requeue = true WHERE (\(sink)::text IS NULL OR sink = \(sink)) AND NOT requeue", logger: logger)
            var marked = 0
            for try await count in try await connection.query(
                "SELECT count(*) FROM dead_letter WHERE (\(sink)::text IS NULL OR sink = \(sink)) AND requeue",
                logger: logger
            ).decode(Int64.self) {
                marked = Int(count)
            }
            return marked
        }
    }

    func purge(sink: String?) async throws(StateError) -> Int {
        try await countDeleted(
            database, "dead letter purge",
            "WITH removed AS (DELETE FROM dead_letter WHERE \(sink)::text IS NULL OR sink = \(sink) RETURNING 1) SELECT count(*) FROM removed")
    }
}

/// The quarantine in PostgreSQL (`quarantine`); admission adds to it.
struct PostgresQuarantine: QuarantineStore {
    let database: StateDatabase

    func elements(tenant: String?) async throws(StateError) -> [QuarantinedElement] {
        let rows = try await database.query(
            "quarantine list",
            """
            SELECT id, tenant, reason, quarantined_at, raw FROM quarantine WHERE \(tenant)::text IS NULL OR tenant = \(tenant) ORDER BY id
            """)
        return try decode("quarantine list") {
            try rows.map { row in
                let (id, tenant, reason, quarantinedAt, raw) = try row.decode((Int64, String, String, String, ByteBuffer).self)
                return QuarantinedElement(id: id, tenant: tenant, reason: reason, quarantinedAt: quarantinedAt, bytes: Data(raw.readableBytesView))
            }
        }
    }

    func counts() async throws(StateError) -> [String: Int] {
        try await countsByName(database, "quarantine count", "SELECT tenant, count(*) FROM quarantine GROUP BY tenant")
    }

    func purge(tenant: String?) async throws(StateError) -> Int {
        try await countDeleted(
            database, "quarantine purge",
            "WITH removed AS (DELETE FROM quarantine WHERE \(tenant)::text IS NULL OR tenant = \(tenant) RETURNING 1) SELECT count(*) FROM removed")
    }
}

/// Sweep schedules in PostgreSQL (`reconciliation`).
struct PostgresSchedules: ScheduleStore {
    let database: StateDatabase

    func reconciliation(tenant: String) async throws(StateError) -> Reconciliation? {
        let rows = try await database.query("sweep schedule read", "SELECT due_at, swept_at, found FROM reconciliation WHERE tenant = \(tenant)")
        return try decode("sweep schedule read") {
            try rows.first.map { row in
                let (due, sweptAt, found) = try row.decode((Double, Double?, Int64?).self)
                return Reconciliation(
                    due: Date(timeIntervalSince1970: due), sweptAt: sweptAt.map { Date(timeIntervalSince1970: $0) }, found: found.map { Int($0) })
            }
        }
    }

    func scheduleReconciliation(tenant: String, due: Date, sweptAt: Date?, found: Int?) async throws(StateError) {
        _ = try await database.query(
            "sweep schedule write",
            """
            INSERT INTO reconciliation (tenant, due_at, swept_at, found) VALUES (\(tenant), \(due.timeIntervalSince1970), \(sweptAt?.timeIntervalSince1970), \(found.map { Int64($0) }))
            ON CONFLICT (tenant) DO UPDATE SET due_at = excluded.due_at, swept_at = coalesce(excluded.swept_at, reconciliation.swept_at),
                found = coalesce(excluded.found, reconciliation.found)
            """)
    }
}

/// `name → n` from a `SELECT name, count(*) ... GROUP BY name`.
func countsByName(_ database: StateDatabase, _ what: String, _ query: PostgresQuery) async throws(StateError) -> [String: Int] {
    let rows = try await database.query(what, query)
    return try decode(what) {
        Dictionary(
            uniqueKeysWithValues: try rows.map { row in
                let (name, count) = try row.decode((String, Int64).self)
                return (name, Int(count))
            })
    }
}

/// The count a `WITH removed AS (DELETE ... RETURNING 1) SELECT count(*)` answers.
private func countDeleted(_ database: StateDatabase, _ what: String, _ query: PostgresQuery) async throws(StateError) -> Int {
    Int(try decodeFirst(try await database.query(what, query), as: Int64.self) ?? 0)
}

/// The room the PostgreSQL state takes: each table's rows and its size with its indexes and
/// TOAST (`pg_total_relation_size`).
struct PostgresStorage: StorageStore {
    let database: StateDatabase

    static let tables = ["cursor", "seen", "outbox", "outbox_pending", "dead_letter", "quarantine", "reconciliation", "member", "lease"]

    func storage() async throws(StateError) -> [StorageUse] {
        var uses: [StorageUse] = []
        for table in Self.tables {
            // The table names are this file's constants, never input.
            let rows = try await database.query(
                "storage", PostgresQuery(unsafeSQL: "SELECT count(*), pg_total_relation_size('\(table)') FROM \(table)"))
            let (count, bytes) = try decode("storage") { try rows.first?.decode((Int64, Int64).self) } ?? (Int64(0), Int64(0))
            uses.append(StorageUse(name: table, rows: Int(count), bytes: bytes))
        }
        return uses
    }
}
