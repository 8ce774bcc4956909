import Foundation
import GRDB

/// The embedded dead letters (`dead_letter`); the outbox adds to them when it confirms.
struct EmbeddedDeadLetters: DeadLetterStore {
    let database: EmbeddedDatabase

    func deadLetters(sink: String?) async throws(StateError) -> [DeadLetter] {
        try await database.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT id, sink, tenant, alert_id, event, reason, failed_at, requeue FROM dead_letter
                    WHERE ?1 IS NULL OR sink = ?1 ORDER BY id
                    """, arguments: [sink]
            ).map { row in
                DeadLetter(
                    id: row["id"], sink: row["sink"], tenant: row["tenant"], alertID: row["alert_id"], event: row["event"],
                    reason: row["reason"], failedAt: row["failed_at"], markedForRequeue: row["requeue"] as Int64 != 0)
            }
        }
    }

    func counts() async throws(StateError) -> [String: Int] {
        try await database.read { db in try countsByName(db, sql: "SELECT sink, count(*) AS n FROM dead_letter GROUP BY sink") }
    }

    func markForRequeue(sink: String?) async throws(StateError) -> Int {
        try await database.write { db in
            try db.execute(sql: "UPDATE dead_letter SET requeue = 1 WHERE (?1 IS NULL OR sink = ?1) AND requeue = 0", arguments: [sink])
            return try Int.fetchOne(db, sql: "SELECT count(*) FROM dead_letter WHERE (?1 IS NULL OR sink = ?1) AND requeue = 1", arguments: [sink])
                ?? 0
        }
    }

    func purge(sink: String?) async throws(StateError) -> Int {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM dead_letter WHERE ?1 IS NULL OR sink = ?1", arguments: [sink])
            return db.changesCount
        }
    }
}

/// The embedded quarantine (`quarantine`); admission adds to it.
struct EmbeddedQuarantine: QuarantineStore {
    let database: EmbeddedDatabase

    func elements(tenant: String?) async throws(StateError) -> [QuarantinedElement] {
        try await database.read { db in
            try Row.fetchAll(
                db, sql: "SELECT id, tenant, reason, quarantined_at, raw FROM quarantine WHERE ?1 IS NULL OR tenant = ?1 ORDER BY id",
                arguments: [tenant]
            ).map { row in
                QuarantinedElement(
                    id: row["id"], tenant: row["tenant"], reason: row["reason"], quarantinedAt: row["quarantined_at"], bytes: row["raw"])
            }
        }
    }

    func counts() async throws(StateError) -> [String: Int] {
        try await database.read { db in try countsByName(db, sql: "SELECT tenant, count(*) AS n FROM quarantine GROUP BY tenant") }
    }

    func purge(tenant: String?) async throws(StateError) -> Int {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM quarantine WHERE ?1 IS NULL OR tenant = ?1", arguments: [tenant])
            return db.changesCount
        }
    }
}

/// The embedded sweep schedules (`reconciliation`).
struct EmbeddedSchedules: ScheduleStore {
    let database: EmbeddedDatabase

    func reconciliation(tenant: String) async throws(StateError) -> Reconciliation? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT due_at, swept_at, found FROM reconciliation WHERE tenant = ?", arguments: [tenant]).map { row in
                let sweptAt: Double? = row["swept_at"]
                return Reconciliation(
                    due: Date(timeIntervalSince1970: row["due_at"]), sweptAt: sweptAt.map { Date(timeIntervalSince1970: $0) },
                    found: row["found"])
            }
        }
    }

    func scheduleReconciliation(tenant: String, due: Date, sweptAt: Date?, found: Int?) async throws(StateError) {
        try await database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO reconciliation (tenant, due_at, swept_at, found) VALUES (?1, ?2, ?3, ?4)
                    ON CONFLICT (tenant) DO UPDATE SET due_at = ?2, swept_at = coalesce(?3, swept_at), found = coalesce(?4, found)
                    """, arguments: [tenant, due.timeIntervalSince1970, sweptAt?.timeIntervalSince1970, found])
        }
    }
}

/// `name → n` from a `SELECT name, count(*) AS n ... GROUP BY name`.
private func countsByName(_ db: Database, sql: String) throws -> [String: Int] {
    var counts: [String: Int] = [:]
    for row in try Row.fetchAll(db, sql: sql) { counts[row[0]] = row["n"] }
    return counts
}

/// The room the embedded state takes: each table's rows, and its pages with its indexes
/// (SQLite's `dbstat`, when the library has it), then the outbox log's segment files.
struct EmbeddedStorage: StorageStore {
    let database: EmbeddedDatabase

    func storage() async throws(StateError) -> [StorageUse] {
        var uses = try await database.read { db in
            let tables = ["cursor", "seen", "sink_position", "dead_letter", "quarantine", "reconciliation"]
            let bytes =
                (try? Dictionary(
                    Row.fetchAll(
                        db,
                        sql: """
                            SELECT s.tbl_name AS name, sum(d.pgsize) AS bytes FROM dbstat d JOIN sqlite_schema s ON s.name = d.name GROUP BY s.tbl_name
                            """
                    ).map { ($0["name"] as String, $0["bytes"] as Int64) }
                ) { first, _ in first }) ?? [:]
            return try tables.map { table in
                StorageUse(name: table, rows: try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table)") ?? 0, bytes: bytes[table])
            }
        }
        let log = database.log
        let segments = try await Blocking.run { () throws(StateError) -> Int64 in
            try log.segments().reduce(Int64(0)) { total, segment in
                var info = stat()
                return total + (stat(log.path(of: segment), &info) == 0 ? Int64(info.st_size) : 0)
            }
        }
        uses.append(StorageUse(name: "outbox log", rows: nil, bytes: segments))
        let files = [database.path, database.path + "-wal"].reduce(Int64(0)) { total, path in
            var info = stat()
            return total + (stat(path, &info) == 0 ? Int64(info.st_size) : 0)
        }
        uses.append(StorageUse(name: "state.sqlite and its WAL", rows: nil, bytes: files))
        return uses
    }
}
