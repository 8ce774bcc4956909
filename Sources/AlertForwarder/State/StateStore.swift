import DefenderAPI
import Foundation
import GRDB
import Timekeeping

/// Why the state database cannot be used. The daemon stops with this message: it never
/// resets state silently, because that would re-send or lose alerts.
public struct StateError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// One alert waiting for one sink.
public struct OutboxRecord: Sendable, Equatable {
    /// Row id: delivery order within a sink.
    public var id: Int64
    public var sink: String
    public var tenant: String
    public var alertID: String
    /// `created` or `updated`.
    public var event: String
    /// When the daemon stored it (ISO 8601, UTC).
    public var receivedAt: String
    /// The alert exactly as the API returned it (compact JSON).
    public var payload: String
}

/// What one admission did.
public struct Admission: Sendable, Equatable {
    public var newAlerts = 0
    public var duplicates = 0
    public var outboxRows = 0
}

/// Durable state in SQLite (GRDB), in `state_directory/state.sqlite`: per tenant the
/// watermark, the dedup keys, and an outbox row per (alert, sink) holding the original JSON.
///
/// Durability: WAL journal with `synchronous = FULL`, so every committed transaction is on
/// disk (the WAL is fsync'd at each commit) before the call returns. With `NORMAL`, a power
/// loss could roll back the last commits after the watermark had moved in a previous run's
/// view: FULL costs one fsync per page of alerts, which is cheap next to an HTTP round trip.
public final class StateStore: Sendable {
    /// Keys are kept this long (Defender keeps alerts about 180 days; an alert updated within
    /// that time must not be mistaken for a new one).
    public static let dedupRetention: Duration = .seconds(180 * 86_400)

    private let database: DatabasePool
    public let path: String

    /// Opens (creating when absent) the database in `directory`, which is created 0700.
    public init(directory: String) throws(StateError) {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw StateError("cannot create the state directory \(directory): \(error.localizedDescription)")
            }
        } else if !isDirectory.boolValue {
            throw StateError("state_directory \(directory) exists and is not a directory")
        }
        path = (directory as NSString).appendingPathComponent("state.sqlite")
        var configuration = GRDB.Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            database = try DatabasePool(path: path, configuration: configuration)
            let check = try database.read { db in try String.fetchOne(db, sql: "PRAGMA quick_check") }
            guard check == "ok" else { throw StateError("integrity check failed: \(check ?? "no answer")") }
            try Self.migrator.migrate(database)
        } catch let error as StateError {
            throw StateError("the state database \(path) is damaged (\(error.description)); stop the daemon, move the file aside and start again to begin from `lookback` (alerts may be delivered again), or restore a backup")
        } catch {
            throw StateError("cannot open the state database \(path): \(error); check permissions and free space; it is never reset automatically")
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
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
        return migrator
    }

    // MARK: Cursor

    /// The tenant's watermark: the newest `lastUpdateTime` stored, or `nil` before the first poll.
    public func watermark(tenant: String) throws(StateError) -> Timestamp? {
        try read { db in
            try Int64.fetchOne(db, sql: "SELECT watermark FROM cursor WHERE tenant = ?", arguments: [tenant]).map { Timestamp(ticks: $0) }
        }
    }

    // MARK: Admission

    /// Admits one page in one transaction: skips known keys, records new ones, enqueues one
    /// outbox row per (alert, sink), and moves the watermark to the newest `lastUpdateTime`
    /// of the page (never back). A crash before the commit leaves nothing; after it, all.
    public func admit(tenant: String, alerts: [Alert], forward: ForwardMode, sinks: [String], now: Date = Date()) throws(StateError) -> Admission {
        guard !alerts.isEmpty else { return Admission() }
        let receivedAt = Timestamp(now).writtenWith(0).description
        let recordedAt = Int64(now.timeIntervalSince1970)
        return try write { db in
            var admission = Admission()
            // Prepared once per transaction (SQLite parses each statement once, not per alert).
            let remember = try db.cachedStatement(sql: "INSERT OR IGNORE INTO seen (tenant, key, alert_id, recorded_at) VALUES (?, ?, ?, ?)")
            let seenBefore = try db.cachedStatement(sql: "SELECT 1 FROM seen WHERE tenant = ? AND alert_id = ? AND key <> ? LIMIT 1")
            let enqueue = try db.cachedStatement(sql: "INSERT INTO outbox (sink, tenant, alert_id, event, received_at, payload) VALUES (?, ?, ?, ?, ?, ?)")
            for alert in alerts {
                let key = Self.key(of: alert, forward: forward)
                try remember.execute(arguments: [tenant, key, alert.id, recordedAt])
                guard db.changesCount > 0 else {
                    admission.duplicates += 1
                    continue
                }
                let updated = try forward == .updates && (Bool.fetchOne(seenBefore, arguments: [tenant, alert.id, key]) ?? false)
                let event = updated ? "updated" : "created"
                for sink in sinks {
                    try enqueue.execute(arguments: [sink, tenant, alert.id, event, receivedAt, alert.json])
                    admission.outboxRows += 1
                }
                admission.newAlerts += 1
            }
            if let newest = alerts.map(\.lastUpdateTime).max() {
                try db.execute(sql: """
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

    /// The dedup key of an alert.
    static func key(of alert: Alert, forward: ForwardMode) -> String {
        forward == .new ? alert.id : "\(alert.id)|\(alert.lastUpdateTime.ticks)"
    }

    /// Whether an alert was already forwarded (read only: for dry runs).
    public func isKnown(tenant: String, alert: Alert, forward: ForwardMode) throws(StateError) -> Bool {
        try read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM seen WHERE tenant = ? AND key = ?", arguments: [tenant, Self.key(of: alert, forward: forward)]) ?? false
        }
    }

    /// Forgets a tenant's cursor and dedup keys (its queued outbox rows stay).
    public func reset(tenant: String) throws(StateError) {
        try write { db in
            try db.execute(sql: "DELETE FROM cursor WHERE tenant = ?", arguments: [tenant])
            try db.execute(sql: "DELETE FROM seen WHERE tenant = ?", arguments: [tenant])
        }
    }

    /// Deletes dedup keys older than ``dedupRetention``; returns how many.
    @discardableResult
    public func pruneDedupKeys(now: Date = Date()) throws(StateError) -> Int {
        let cutoff = Int64(now.timeIntervalSince1970) - Self.dedupRetention.components.seconds
        return try write { db in
            try db.execute(sql: "DELETE FROM seen WHERE recorded_at < ?", arguments: [cutoff])
            return db.changesCount
        }
    }

    // MARK: Outbox

    /// The oldest `limit` rows waiting for `sink`.
    public func pending(sink: String, limit: Int) throws(StateError) -> [OutboxRecord] {
        try read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT id, sink, tenant, alert_id, event, received_at, payload FROM outbox WHERE sink = ? ORDER BY id LIMIT ?"),
                             arguments: [sink, limit]).map { row in
                OutboxRecord(id: row["id"], sink: row["sink"], tenant: row["tenant"], alertID: row["alert_id"],
                             event: row["event"], receivedAt: row["received_at"], payload: row["payload"])
            }
        }
    }

    /// Removes rows a sink has confirmed.
    public func confirm(_ ids: [Int64]) throws(StateError) {
        guard !ids.isEmpty else { return }
        try write { db in
            try db.execute(sql: "DELETE FROM outbox WHERE id IN (\(ids.map { _ in "?" }.joined(separator: ",")))", arguments: StatementArguments(ids))
        }
    }

    /// Rows waiting, per sink.
    public func outboxDepth() throws(StateError) -> [String: Int] {
        try read { db in
            var depth: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT sink, count(*) AS n FROM outbox GROUP BY sink") {
                depth[row["sink"]] = row["n"]
            }
            return depth
        }
    }

    /// Drops the rows of sinks no longer configured; returns how many.
    @discardableResult
    public func dropOutbox(except sinks: Set<String>) throws(StateError) -> Int {
        try write { db in
            let placeholders = sinks.map { _ in "?" }.joined(separator: ",")
            try db.execute(sql: sinks.isEmpty ? "DELETE FROM outbox" : "DELETE FROM outbox WHERE sink NOT IN (\(placeholders))",
                           arguments: StatementArguments(Array(sinks)))
            return db.changesCount
        }
    }

    // MARK: Inspection

    /// A summary for `state show`.
    public struct TenantState: Sendable, Equatable {
        public var tenant: String
        public var watermark: String?
        public var dedupKeys: Int
    }

    public func tenants() throws(StateError) -> [TenantState] {
        try read { db in
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

    // MARK: Plumbing

    private func read<T>(_ body: (Database) throws -> T) throws(StateError) -> T {
        do { return try database.read(body) } catch { throw StateError("state database read failed: \(error)") }
    }

    private func write<T>(_ body: (Database) throws -> T) throws(StateError) -> T {
        do { return try database.write(body) } catch { throw StateError("state database write failed: \(error)") }
    }
}
