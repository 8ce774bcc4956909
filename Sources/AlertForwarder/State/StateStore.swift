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
    /// The alert's sequence number in the outbox: delivery order.
    public var id: Int64
    public var sink: String
    public var tenant: String
    public var alertID: String
    /// `created` or `updated`.
    public var event: String
    /// When the daemon stored it (ISO 8601, UTC).
    public var receivedAt: String
    /// The alert exactly as the API returned it, byte for byte.
    public var payloadBytes: [UInt8]

    /// The same as text.
    public var payload: String {
        get { String(decoding: payloadBytes, as: UTF8.self) }
        set { payloadBytes = Array(newValue.utf8) }
    }

    public init(id: Int64, sink: String, tenant: String, alertID: String, event: String, receivedAt: String, payloadBytes: [UInt8]) {
        self.id = id
        self.sink = sink
        self.tenant = tenant
        self.alertID = alertID
        self.event = event
        self.receivedAt = receivedAt
        self.payloadBytes = payloadBytes
    }

    public init(id: Int64, sink: String, tenant: String, alertID: String, event: String, receivedAt: String, payload: String) {
        self.init(id: id, sink: sink, tenant: tenant, alertID: alertID, event: event, receivedAt: receivedAt, payloadBytes: Array(payload.utf8))
    }
}

/// Records read for one sink, and where its position moves when they are confirmed.
public struct OutboxBatch: Sendable {
    public let sink: String
    public let records: [OutboxRecord]
    let start: LogPosition
    let next: LogPosition
    /// Whether the records are dead letters re-queued (`state dead-letters --requeue`), read
    /// from the dead-letter table ahead of the log (their ids are the dead letters' ids); the
    /// log position does not move when they are confirmed.
    public let requeued: Bool

    init(sink: String, records: [OutboxRecord], start: LogPosition, next: LogPosition, requeued: Bool = false) {
        self.sink = sink
        self.records = records
        self.start = start
        self.next = next
        self.requeued = requeued
    }

    /// Whether confirming moves the sink on: it read records, or passed records of other sinks.
    public var advances: Bool { requeued ? !records.isEmpty : next.sequence > start.sequence }
}

/// What one admission did.
public struct Admission: Sendable, Equatable {
    public var newAlerts = 0
    public var duplicates = 0
    /// Alerts queued, counted once per sink they wait for (what `max_outbox` counts).
    public var queuedForSinks = 0
    /// Elements quarantined by this admission (not those quarantined before).
    public var quarantined: [RejectedElement] = []
    /// The alerts admitted (new), as they came.
    public var admitted: [Alert] = []
}

/// Durable state in `state_directory`: in SQLite (GRDB, `state.sqlite`) per tenant the
/// watermark and the dedup keys, and for the outbox its committed end and each sink's position
/// and count; the alerts' bytes themselves in the ``OutboxLog`` (`outbox/`), written once for
/// all sinks (SQLite would write each one three times: log, checkpoint, delete).
///
/// Durability: WAL journal with `synchronous = FULL`, so every committed transaction is on
/// disk (the WAL is fsync'd at each commit) before the call returns. With `NORMAL`, a power
/// loss could roll back the last commits after the watermark had moved in a previous run's
/// view: FULL costs one fsync per page of alerts, which is cheap next to an HTTP round trip.
/// The outbox log is fdatasync'd before the transaction that admits its records commits.
public final class StateStore: Sendable {
    /// Keys are kept this long (Defender keeps alerts about 180 days; an alert updated within
    /// that time must not be mistaken for a new one).
    public static let dedupRetention: Duration = .seconds(180 * 86_400)

    private let database: DatabasePool
    private let log: OutboxLog
    public let path: String
    /// The owner's lock on the state directory (`lock`), held open for the store's life.
    private let lock: Int32?

    /// Who opens the state.
    public enum Access: Sendable {
        /// The daemon or `poll-once`: the one writer of the outbox log. It holds the state
        /// directory's lock for as long as the store lives (a second owner is refused, never
        /// let in to interleave its appends), and on opening cuts the log back to what was
        /// committed (an append cut short by a crash).
        case owner
        /// The `state` commands and a dry run: they read, and change only the database (which
        /// SQLite serializes), never the outbox log's files, which a running daemon may be
        /// appending to at that very moment: its bytes are on disk a moment before the commit
        /// that counts them, and cutting them off then loses alerts.
        case inspector
    }

    /// Opens (creating when absent) the state in `directory`, which is created 0700.
    /// `segmentSize` is for tests: how large an outbox segment grows before the next one starts.
    public init(directory: String, segmentSize: Int64 = 64 << 20, access: Access = .owner) throws(StateError) {
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
        lock = access == .owner ? try Self.lock(directory) : nil
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
        log = try OutboxLog(directory: (directory as NSString).appendingPathComponent("outbox"), segmentSize: segmentSize)
        guard access == .owner else { return }
        let (end, oldest) = try read { db in (try Self.end(db), try Int64.fetchOne(db, sql: "SELECT min(segment) FROM sink_position")) }
        try log.recover(end: end, oldest: oldest ?? end.segment)
        try convertOutboxTable()
    }

    deinit {
        if let lock { close(lock) }
    }

    /// Takes the state directory's lock (`flock` on `lock`, released when the process ends,
    /// however it ends), or says who has it.
    private static func lock(_ directory: String) throws(StateError) -> Int32 {
        let file = (directory as NSString).appendingPathComponent("lock")
        let descriptor = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw StateError("cannot open \(file): \(String(cString: strerror(errno)))") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK
                ? "another process (a running defender-alertd, or poll-once) is using the state directory \(directory); stop it first (`systemctl stop defender-alertd`)"
                : "cannot lock \(file): \(String(cString: strerror(errno)))"
            close(descriptor)
            throw StateError(reason)
        }
        return descriptor
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
        // The alerts' bytes move to the outbox log (`convertOutboxTable` empties `outbox`).
        migrator.registerMigration("v2") { db in
            try db.execute(sql: """
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
            try db.execute(sql: """
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
            try db.execute(sql: """
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
            try db.execute(sql: """
                CREATE TABLE reconciliation (
                    tenant TEXT PRIMARY KEY NOT NULL,
                    due_at REAL NOT NULL,
                    swept_at REAL,
                    found INTEGER
                );
                """)
        }
        return migrator
    }

    /// Moves the rows of the `outbox` table of a version before the outbox log into the log,
    /// in order and in steps (each its own transaction), then drops the table. Rows of one
    /// alert for several sinks become one record for those sinks.
    private func convertOutboxTable() throws(StateError) {
        guard try read({ db in try db.tableExists("outbox") }) else { return }
        while true {
            let done: Bool = try writeQueuing { db, undo in
                let rows = try Row.fetchAll(db, sql: "SELECT id, sink, tenant, alert_id, event, received_at, payload FROM outbox ORDER BY id LIMIT 10000")
                guard !rows.isEmpty else {
                    try db.execute(sql: "DROP TABLE outbox")
                    return true
                }
                var entries: [OutboxLog.Entry] = []
                for row in rows {
                    let entry = OutboxLog.Entry(tenant: row["tenant"], alertID: row["alert_id"], event: row["event"], receivedAt: row["received_at"],
                                            payload: Data((row["payload"] as String).utf8), sinks: [row["sink"]])
                    if let last = entries.last, last.tenant == entry.tenant, last.alertID == entry.alertID, last.event == entry.event,
                       last.receivedAt == entry.receivedAt, last.payload == entry.payload, !last.sinks.contains(entry.sinks[0]) {
                        entries[entries.count - 1].sinks += entry.sinks
                    } else {
                        entries.append(entry)
                    }
                }
                try self.queue(entries, in: db, undo: &undo)
                try db.execute(sql: "DELETE FROM outbox WHERE id <= ?", arguments: [rows.last!["id"] as Int64])
                return false
            }
            if done { return }
        }
    }

    // MARK: Cursor

    /// The tenant's watermark: the newest `lastUpdateTime` stored, or `nil` before the first poll.
    public func watermark(tenant: String) throws(StateError) -> Timestamp? {
        try read { db in
            try Int64.fetchOne(db, sql: "SELECT watermark FROM cursor WHERE tenant = ?", arguments: [tenant]).map { Timestamp(ticks: $0) }
        }
    }

    // MARK: Admission

    /// Admits one page in one transaction: skips known keys, records new ones, appends each new
    /// alert once to the outbox log for its sinks, and moves the watermark to the newest
    /// `lastUpdateTime` of the page (never back). A crash before the commit leaves nothing;
    /// after it, all.
    public func admit(tenant: String, alerts: [Alert], rejected: [RejectedElement] = [], forward: ForwardMode, sinks: [String],
                      now: Date = Date(), watermark: WatermarkMove = .byAlerts) throws(StateError) -> Admission {
        guard !alerts.isEmpty || !rejected.isEmpty else { return Admission() }
        let receivedAt = Timestamp(now).writtenWith(0).description
        let recordedAt = Int64(now.timeIntervalSince1970)
        return try writeQueuing { db, undo in
            var admission = Admission()
            for element in rejected {
                try db.execute(sql: "INSERT OR IGNORE INTO quarantine (tenant, raw, reason, quarantined_at) VALUES (?, ?, ?, ?)",
                               arguments: [tenant, element.bytes, element.reason, receivedAt])
                if db.changesCount > 0 { admission.quarantined.append(element) }
            }
            var queued: [OutboxLog.Entry] = []
            // Prepared once per transaction (SQLite parses each statement once, not per alert).
            let remember = try DedupKeyInsert(db)
            defer { remember.close() }
            // Keys of other versions of the alert ("id", "id|ticks") sort from "id" to before
            // "id}" ('|' < '}'): a range of the primary key; alert_id makes the match exact.
            let seenBefore = try db.cachedStatement(sql: "SELECT 1 FROM seen WHERE tenant = ? AND key >= ? AND key < ? AND alert_id = ? AND key <> ? LIMIT 1")
            for alert in alerts {
                let key = Self.key(of: alert, forward: forward)
                guard try remember.insert(tenant: tenant, key: key, alertID: alert.id, recordedAt: recordedAt) else {
                    admission.duplicates += 1
                    continue
                }
                let updated = try forward == .updates
                    && (Bool.fetchOne(seenBefore, arguments: [tenant, alert.id, alert.id + "}", alert.id, key]) ?? false)
                if !sinks.isEmpty {
                    queued.append(OutboxLog.Entry(tenant: tenant, alertID: alert.id, event: updated ? "updated" : "created", receivedAt: receivedAt,
                                              payload: alert.bytes, sinks: sinks))
                }
                admission.queuedForSinks += sinks.count
                admission.newAlerts += 1
                admission.admitted.append(alert)
            }
            try self.queue(queued, in: db, undo: &undo)
            // The poller decides (``WatermarkProgress``: complete windows only, never past the
            // server's present).
            let newest: Timestamp?
            switch watermark {
            case .byAlerts: newest = alerts.map(\.lastUpdateTime).max()
            case .hold: newest = nil
            case .to(let time): newest = time
            }
            if let newest {
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

    /// How an admission moves the tenant's watermark (it never moves back).
    public enum WatermarkMove: Sendable, Equatable {
        /// To the newest update time among the alerts.
        case byAlerts
        /// Not at all: the alerts are part of a window not yet read to its end.
        case hold
        /// To this time: the end of a window read over several admissions.
        case to(Timestamp)
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

    /// Forgets a tenant's cursor and dedup keys (its queued alerts stay queued).
    public func reset(tenant: String) throws(StateError) {
        try write { db in
            try db.execute(sql: "DELETE FROM cursor WHERE tenant = ?", arguments: [tenant])
            try db.execute(sql: "DELETE FROM seen WHERE tenant = ?", arguments: [tenant])
            try db.execute(sql: "DELETE FROM reconciliation WHERE tenant = ?", arguments: [tenant])
        }
    }

    // MARK: Reconciliation

    /// A tenant's reconciliation schedule: when the next sweep is due, when the last ended and
    /// how many alerts it found.
    public struct Reconciliation: Sendable, Equatable {
        public var due: Date
        public var sweptAt: Date?
        public var found: Int?
    }

    /// The tenant's reconciliation schedule, if one was made.
    public func reconciliation(tenant: String) throws(StateError) -> Reconciliation? {
        try read { db in
            try Row.fetchOne(db, sql: "SELECT due_at, swept_at, found FROM reconciliation WHERE tenant = ?", arguments: [tenant]).map { row in
                let sweptAt: Double? = row["swept_at"]
                return Reconciliation(due: Date(timeIntervalSince1970: row["due_at"]), sweptAt: sweptAt.map { Date(timeIntervalSince1970: $0) },
                                      found: row["found"])
            }
        }
    }

    /// Schedules the tenant's next sweep; after a sweep, also records when it ended and what it found.
    public func scheduleReconciliation(tenant: String, due: Date, sweptAt: Date? = nil, found: Int? = nil) throws(StateError) {
        try write { db in
            try db.execute(sql: """
                INSERT INTO reconciliation (tenant, due_at, swept_at, found) VALUES (?1, ?2, ?3, ?4)
                ON CONFLICT (tenant) DO UPDATE SET due_at = ?2, swept_at = coalesce(?3, swept_at), found = coalesce(?4, found)
                """, arguments: [tenant, due.timeIntervalSince1970, sweptAt?.timeIntervalSince1970, found])
        }
    }

    /// Deletes dedup keys older than ``dedupRetention``; returns how many. A scan of the whole
    /// table (no index by age: see migration v3), about 70 ms per million keys.
    ///
    /// Age is measured per tenant from the earlier of the local clock and the tenant's
    /// watermark (the newest alert's own `lastUpdateTime`, the server's clock): a local clock
    /// set 200 days ahead at one start must not prune keys that are still needed, which would
    /// make the next poll deliver those alerts again.
    @discardableResult
    public func pruneDedupKeys(now: Date = Date()) throws(StateError) -> Int {
        let localNow = Int64(now.timeIntervalSince1970)
        let retention = Self.dedupRetention.components.seconds
        return try write { db in
            var removed = 0
            for row in try Row.fetchAll(db, sql: "SELECT tenant, watermark FROM cursor") {
                let newestAlert = (row["watermark"] as Int64) / 10_000_000
                try db.execute(sql: "DELETE FROM seen WHERE tenant = ? AND recorded_at < ?",
                               arguments: [row["tenant"] as String, min(localNow, newestAlert) - retention])
                removed += db.changesCount
            }
            return removed
        }
    }

    // MARK: Outbox

    /// The committed end of the outbox log.
    private static func end(_ db: Database) throws -> LogPosition {
        guard let row = try Row.fetchOne(db, sql: "SELECT segment, byte_offset, sequence FROM outbox_end") else {
            throw StateError("the outbox_end row is missing")
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
    private func queue(_ alerts: [OutboxLog.Entry], in db: Database, undo: inout LogPosition?) throws {
        guard !alerts.isEmpty else { return }
        let end = try Self.end(db)
        var counts: [String: Int] = [:]
        var sinks: (named: [String], distinct: [String]) = ([], [])
        for alert in alerts {
            // A record counts once for a sink, as its reader does, even if named twice. (The
            // alerts of one admission share their list of sinks: deduplicated once.)
            if alert.sinks != sinks.named { sinks = (alert.sinks, Array(Set(alert.sinks))) }
            for sink in sinks.distinct { counts[sink, default: 0] += 1 }
        }
        let start = try db.cachedStatement(sql: "INSERT OR IGNORE INTO sink_position (sink, segment, byte_offset, sequence, pending) VALUES (?, ?, ?, ?, 0)")
        let count = try db.cachedStatement(sql: "UPDATE sink_position SET pending = pending + ? WHERE sink = ?")
        for (sink, added) in counts {
            try start.execute(arguments: [sink, end.segment, end.offset, end.sequence])
            try count.execute(arguments: [added, sink])
        }
        undo = end
        let newEnd = try log.append(alerts, after: end)
        try db.execute(sql: "UPDATE outbox_end SET segment = ?, byte_offset = ?, sequence = ?", arguments: [newEnd.segment, newEnd.offset, newEnd.sequence])
    }

    /// The next `limit` alerts for `sink`: dead letters re-queued for it first (a front lane:
    /// they do not wait behind the backlog), oldest first; else the oldest in the outbox log.
    public func pending(sink: String, limit: Int) throws(StateError) -> OutboxBatch {
        let (requeued, position, end) = try read { db in
            // The dead-letter index (sink, requeue) finds them; nearly always none.
            let letters = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT id, tenant, alert_id, event, received_at, payload FROM dead_letter WHERE sink = ? AND requeue = 1 ORDER BY id LIMIT ?
                """), arguments: [sink, max(1, limit)]).map { row in
                OutboxRecord(id: row["id"], sink: sink, tenant: row["tenant"], alertID: row["alert_id"], event: row["event"],
                             receivedAt: row["received_at"], payloadBytes: [UInt8](row["payload"] as Data))
            }
            let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT segment, byte_offset, sequence FROM sink_position WHERE sink = ?"), arguments: [sink])
            return (letters, row.map(Self.position), try Self.end(db))
        }
        if !requeued.isEmpty {
            let here = position ?? end
            return OutboxBatch(sink: sink, records: requeued, start: here, next: here, requeued: true)
        }
        guard let position else { return OutboxBatch(sink: sink, records: [], start: end, next: end) }
        let (records, next) = try log.read(sink: sink, from: position, to: end, limit: limit)
        return OutboxBatch(sink: sink, records: records, start: position, next: next)
    }

    /// Moves the sink past a batch it delivered (a batch read before is confirmed once); the
    /// records it refused for good become dead letters in the same transaction. A batch of
    /// re-queued dead letters: those delivered are deleted, those refused again stay dead
    /// letters (no longer marked) with the new reason.
    public func confirm(_ batch: OutboxBatch, rejected: [SinkRejection] = [], now: Date = Date()) throws(StateError) {
        guard batch.advances else { return }
        if batch.requeued {
            try confirmRequeued(batch, rejected: rejected, now: now)
            return
        }
        try write { db in
            try db.execute(sql: """
                UPDATE sink_position SET segment = ?, byte_offset = ?, sequence = ?, pending = max(0, pending - ?)
                WHERE sink = ? AND sequence = ?
                """, arguments: [batch.next.segment, batch.next.offset, batch.next.sequence, batch.records.count, batch.sink, batch.start.sequence])
            guard db.changesCount > 0, !rejected.isEmpty else { return }
            let failedAt = Timestamp(now).description
            let insert = try db.cachedStatement(sql: """
                INSERT INTO dead_letter (sink, tenant, alert_id, event, received_at, payload, reason, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for rejection in rejected {
                guard let record = batch.records.first(where: { $0.id == rejection.recordID }) else { continue }
                try insert.execute(arguments: [batch.sink, record.tenant, record.alertID, record.event, record.receivedAt,
                                               Data(record.payloadBytes), rejection.reason, failedAt])
            }
        }
        if batch.next.segment != batch.start.segment { try removeDeliveredSegments() }
    }

    /// Confirms a batch of re-queued dead letters. Rows purged meanwhile are simply gone.
    private func confirmRequeued(_ batch: OutboxBatch, rejected: [SinkRejection], now: Date) throws(StateError) {
        let refused = Dictionary(rejected.map { ($0.recordID, $0.reason) }, uniquingKeysWith: { first, _ in first })
        let failedAt = Timestamp(now).description
        try write { db in
            let delete = try db.cachedStatement(sql: "DELETE FROM dead_letter WHERE id = ? AND sink = ? AND requeue = 1")
            let again = try db.cachedStatement(sql: "UPDATE dead_letter SET requeue = 0, reason = ?, failed_at = ? WHERE id = ? AND sink = ? AND requeue = 1")
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
    private func removeDeliveredSegments() throws(StateError) {
        let oldest = try read { db in
            try min(Int64.fetchOne(db, sql: "SELECT min(segment) FROM sink_position") ?? Int64.max, Self.end(db).segment)
        }
        try log.removeSegments(before: oldest)
    }

    /// Alerts waiting, per sink (sinks with none are left out).
    public func outboxDepth() throws(StateError) -> [String: Int] {
        try read { db in
            var depth: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT sink, pending FROM sink_position WHERE pending > 0") {
                depth[row["sink"]] = row["pending"]
            }
            return depth
        }
    }

    /// When the oldest alert waiting for `sink` was received, if one waits.
    public func oldestPending(sink: String) throws(StateError) -> Date? {
        try pending(sink: sink, limit: 1).records.first.flatMap { Timestamp(parsing: $0.receivedAt)?.date }
    }

    /// Forgets the sinks no longer configured and what waited for them; returns how many alerts.
    @discardableResult
    public func dropOutbox(except sinks: Set<String>) throws(StateError) -> Int {
        let dropped = try write { db in
            let placeholders = sinks.map { _ in "?" }.joined(separator: ",")
            let filter = sinks.isEmpty ? "" : "WHERE sink NOT IN (\(placeholders))"
            let arguments = StatementArguments(Array(sinks))
            let count = try Int.fetchOne(db, sql: "SELECT coalesce(sum(pending), 0) FROM sink_position \(filter)", arguments: arguments) ?? 0
            try db.execute(sql: "DELETE FROM sink_position \(filter)", arguments: arguments)
            return count
        }
        try removeDeliveredSegments()
        return dropped
    }

    // MARK: Dead letters

    /// A record a sink refused for good.
    public struct DeadLetter: Sendable, Equatable {
        public var id: Int64
        public var sink: String
        public var tenant: String
        public var alertID: String
        public var event: String
        public var reason: String
        public var failedAt: String
        public var requeueRequested: Bool
    }

    /// The dead letters, oldest first (of one sink, or all).
    public func deadLetters(sink: String? = nil) throws(StateError) -> [DeadLetter] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, sink, tenant, alert_id, event, reason, failed_at, requeue FROM dead_letter
                WHERE ?1 IS NULL OR sink = ?1 ORDER BY id
                """, arguments: [sink]).map { row in
                DeadLetter(id: row["id"], sink: row["sink"], tenant: row["tenant"], alertID: row["alert_id"], event: row["event"],
                           reason: row["reason"], failedAt: row["failed_at"], requeueRequested: row["requeue"] as Int64 != 0)
            }
        }
    }

    /// Dead letters per sink, for `STATUS=`.
    public func deadLetterCounts() throws(StateError) -> [String: Int] {
        try read { db in
            var counts: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT sink, count(*) AS n FROM dead_letter GROUP BY sink") { counts[row["sink"]] = row["n"] }
            return counts
        }
    }

    /// Marks dead letters to be sent again. Safe while the daemon runs (a change of the
    /// database only): its sink workers read marked dead letters ahead of the outbox log
    /// (``pending(sink:limit:)``), with their next batch, and delete each once delivered.
    /// Returns how many are marked.
    @discardableResult
    public func requestRequeue(sink: String? = nil) throws(StateError) -> Int {
        try write { db in
            try db.execute(sql: "UPDATE dead_letter SET requeue = 1 WHERE (?1 IS NULL OR sink = ?1) AND requeue = 0", arguments: [sink])
            return try Int.fetchOne(db, sql: "SELECT count(*) FROM dead_letter WHERE (?1 IS NULL OR sink = ?1) AND requeue = 1", arguments: [sink]) ?? 0
        }
    }

    /// Deletes dead letters (of one sink, or all); returns how many.
    @discardableResult
    public func purgeDeadLetters(sink: String? = nil) throws(StateError) -> Int {
        try write { db in
            try db.execute(sql: "DELETE FROM dead_letter WHERE ?1 IS NULL OR sink = ?1", arguments: [sink])
            return db.changesCount
        }
    }

    /// An element of an API answer kept in quarantine.
    public struct QuarantinedElement: Sendable, Equatable {
        public var id: Int64
        public var tenant: String
        public var reason: String
        public var quarantinedAt: String
        public var bytes: Data
    }

    /// The quarantined elements, oldest first (of one tenant, or all).
    public func quarantine(tenant: String? = nil) throws(StateError) -> [QuarantinedElement] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, tenant, reason, quarantined_at, raw FROM quarantine WHERE ?1 IS NULL OR tenant = ?1 ORDER BY id",
                             arguments: [tenant]).map { row in
                QuarantinedElement(id: row["id"], tenant: row["tenant"], reason: row["reason"], quarantinedAt: row["quarantined_at"], bytes: row["raw"])
            }
        }
    }

    /// Quarantined elements per tenant, for `STATUS=`.
    public func quarantineCounts() throws(StateError) -> [String: Int] {
        try read { db in
            var counts: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT tenant, count(*) AS n FROM quarantine GROUP BY tenant") { counts[row["tenant"]] = row["n"] }
            return counts
        }
    }

    /// Deletes quarantined elements (of one tenant, or all); returns how many.
    @discardableResult
    public func purgeQuarantine(tenant: String? = nil) throws(StateError) -> Int {
        try write { db in
            try db.execute(sql: "DELETE FROM quarantine WHERE ?1 IS NULL OR tenant = ?1", arguments: [tenant])
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
        do { return try database.read(body) } catch let error as StateError { throw error } catch {
            throw StateError("state database read failed: \(error)")
        }
    }

    private func write<T>(_ body: (Database) throws -> T) throws(StateError) -> T {
        do { return try database.write(body) } catch let error as StateError { throw error } catch {
            throw StateError("state database write failed: \(error)")
        }
    }

    /// A write transaction that may append to the outbox log: if it fails after an append, the
    /// log is cut back to its committed end.
    private func writeQueuing<T>(_ body: (Database, inout LogPosition?) throws -> T) throws(StateError) -> T {
        var undo: LogPosition?
        do {
            return try write { db in try body(db, &undo) }
        } catch {
            if let undo { log.discard(after: undo) }
            throw error
        }
    }
}
