import GRDB

/// The embedded database's tables, by version. A database written by a newer version (one
/// that knows migrations this one does not) is refused by name instead of used half-understood.
enum EmbeddedSchema {
    static func migrate(_ pool: DatabasePool) throws {
        let migrator = migrator
        let unknown = try pool.read { db in try migrator.appliedIdentifiers(db).subtracting(migrator.migrations) }
        guard unknown.isEmpty else {
            throw StateError(
                .incompatible,
                "it was written by a newer version of defender-alertd (it has the migrations \(unknown.sorted().joined(separator: ", ")), which this one does not know); run that version, or restore a backup made with this one"
            )
        }
        try migrator.migrate(pool)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE cursor (
                        tenant TEXT PRIMARY KEY NOT NULL,
                        watermark INTEGER NOT NULL,
                        watermark_text TEXT NOT NULL,
                        updated_at TEXT NOT NULL
                    );
                    CREATE TABLE seen (
                        tenant TEXT NOT NULL,
                        key TEXT NOT NULL,
                        alert_id TEXT NOT NULL,
                        recorded_at INTEGER NOT NULL,
                        PRIMARY KEY (tenant, key)
                    ) WITHOUT ROWID;
                    CREATE INDEX seen_by_alert ON seen (tenant, alert_id);
                    CREATE INDEX seen_by_age ON seen (recorded_at);
                    CREATE TABLE outbox (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        sink TEXT NOT NULL,
                        tenant TEXT NOT NULL,
                        alert_id TEXT NOT NULL,
                        event TEXT NOT NULL,
                        received_at TEXT NOT NULL,
                        payload TEXT NOT NULL
                    );
                    CREATE INDEX outbox_by_sink ON outbox (sink, id);
                    """)
        }
        // The alerts' bytes move to the outbox log (`convertOutboxTable` empties `outbox`).
        migrator.registerMigration("v2") { db in
            try db.execute(
                sql: """
                    CREATE TABLE outbox_end (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        segment INTEGER NOT NULL,
                        byte_offset INTEGER NOT NULL,
                        sequence INTEGER NOT NULL
                    );
                    INSERT INTO outbox_end (id, segment, byte_offset, sequence) VALUES (1, \(OutboxLog.first.segment), 0, \(OutboxLog.first.sequence));
                    CREATE TABLE sink_position (
                        sink TEXT PRIMARY KEY NOT NULL,
                        segment INTEGER NOT NULL,
                        byte_offset INTEGER NOT NULL,
                        sequence INTEGER NOT NULL,
                        pending INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    """)
        }
        // Dedup keys are found through the primary key alone: other versions of an alert are
        // a range of it (see `admit`), and pruning scans the table once an hour instead of
        // keeping an index by age. Two indexes fewer to update for every alert admitted: the
        // inserts of 10,000 keys took 60 ms with them, 32 without.
        migrator.registerMigration("v3") { db in
            try db.execute(sql: "DROP INDEX IF EXISTS seen_by_alert; DROP INDEX IF EXISTS seen_by_age")
        }
        // Records a sink refused for good, with the receiver's reason; `requeue` is set by
        // `state dead-letters --requeue`, and a marked record is sent ahead of the log.
        migrator.registerMigration("v4") { db in
            try db.execute(
                sql: """
                    CREATE TABLE dead_letter (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        sink TEXT NOT NULL,
                        tenant TEXT NOT NULL,
                        alert_id TEXT NOT NULL,
                        event TEXT NOT NULL,
                        received_at TEXT NOT NULL,
                        payload BLOB NOT NULL,
                        reason TEXT NOT NULL,
                        failed_at TEXT NOT NULL,
                        requeue INTEGER NOT NULL DEFAULT 0
                    );
                    CREATE INDEX dead_letter_by_sink ON dead_letter (sink, requeue);
                    """)
        }
        // Elements of an API answer that are not alerts the daemon can read, kept with their
        // bytes (once: the same element re-read within the overlap is not kept again).
        migrator.registerMigration("v5") { db in
            try db.execute(
                sql: """
                    CREATE TABLE quarantine (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        tenant TEXT NOT NULL,
                        raw BLOB NOT NULL,
                        reason TEXT NOT NULL,
                        quarantined_at TEXT NOT NULL,
                        UNIQUE (tenant, raw)
                    );
                    """)
        }
        // Each tenant's reconciliation sweeps: when the next is due (a restart keeps the
        // schedule), when the last ended and how many alerts it found.
        migrator.registerMigration("v6") { db in
            try db.execute(
                sql: """
                    CREATE TABLE reconciliation (
                        tenant TEXT PRIMARY KEY NOT NULL,
                        due_at REAL NOT NULL,
                        swept_at REAL,
                        found INTEGER
                    );
                    """)
        }
        // What a dead letter is: an alert, or an incident (the outbox log says it of each
        // record; the cursor and keys of a tenant's incidents are kept under "NAME/incidents").
        migrator.registerMigration("v7") { db in
            try db.execute(sql: "ALTER TABLE dead_letter ADD COLUMN kind TEXT NOT NULL DEFAULT 'alert'")
        }
        return migrator
    }
}
