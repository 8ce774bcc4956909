import GRDB
import GRDBSQLite

/// `INSERT OR IGNORE INTO seen` for one admission, through SQLite's own statement API: per
/// alert, GRDB's argument arrays (boxed values, a dictionary of bindings) cost more CPU than
/// the insert itself. Lives inside one write transaction; finalized by ``close()``.
struct DedupKeyInsert {
    private let connection: OpaquePointer
    private let statement: OpaquePointer
    /// SQLite copies the bound text (`SQLITE_TRANSIENT`).
    private static let transient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

    init(_ db: Database) throws(StateError) {
        guard let connection = db.sqliteConnection else { throw StateError(.unavailable, "the state database is closed") }
        var statement: OpaquePointer?
        let sql = "INSERT OR IGNORE INTO seen (tenant, key, alert_id, recorded_at) VALUES (?, ?, ?, ?)"
        guard sqlite3_prepare_v2(connection, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw StateError(.unavailable, "cannot prepare the dedup key insert: \(String(cString: sqlite3_errmsg(connection)))")
        }
        self.connection = connection
        self.statement = statement
    }

    /// Records the key; whether it was new.
    func insert(tenant: String, key: String, alertID: String, recordedAt: Int64) throws(StateError) -> Bool {
        sqlite3_reset(statement)
        bind(tenant, at: 1)
        bind(key, at: 2)
        bind(alertID, at: 3)
        sqlite3_bind_int64(statement, 4, recordedAt)
        let result = sqlite3_step(statement)
        guard result == SQLITE_DONE else {
            let kind: StateError.Kind = result == SQLITE_FULL ? .full : result == SQLITE_CORRUPT || result == SQLITE_NOTADB ? .corrupt : .unavailable
            throw StateError(kind, "cannot record the dedup key of alert \(alertID): \(String(cString: sqlite3_errmsg(connection)))")
        }
        return sqlite3_changes(connection) > 0
    }

    func close() {
        sqlite3_finalize(statement)
    }

    private func bind(_ text: String, at index: Int32) {
        var text = text
        text.withUTF8 { bytes in
            guard let base = bytes.baseAddress else {
                _ = sqlite3_bind_text(statement, index, "", 0, Self.transient)  // never NULL
                return
            }
            _ = base.withMemoryRebound(to: CChar.self, capacity: bytes.count) { chars in
                sqlite3_bind_text(statement, index, chars, Int32(bytes.count), Self.transient)
            }
        }
    }
}
