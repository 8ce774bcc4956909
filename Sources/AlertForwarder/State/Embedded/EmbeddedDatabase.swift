import Foundation
import GRDB

/// The embedded state's storage, shared by its parts: SQLite (GRDB, `state.sqlite`) for per
/// tenant the watermark and the dedup keys, the outbox's committed end and each sink's
/// position and count, dead letters, quarantine and sweep schedules; the alerts' bytes in the
/// ``OutboxLog`` (`outbox/`), written once for all sinks (SQLite would write each one three
/// times: log, checkpoint, delete).
///
/// Durability: WAL journal with `synchronous = FULL`, so every committed transaction is on
/// disk (the WAL is fsync'd at each commit) before the call returns. With `NORMAL`, a power
/// loss could roll back the last commits after the watermark had moved in a previous run's
/// view: FULL costs one fsync per page of alerts, which is cheap next to an HTTP round trip.
/// The outbox log is fdatasync'd before the transaction that admits its records commits.
///
/// Every call runs on a thread of its own (``Blocking``), never on Swift's cooperative pool:
/// SQLite's commits and the log's `fdatasync` block for milliseconds, and the pool has one
/// thread per core.
final class EmbeddedDatabase: Sendable {
    let pool: DatabasePool
    let log: OutboxLog
    let path: String
    /// The owner's lock on the state directory, held for the database's life.
    private let lock: DirectoryLock?

    /// Opens (creating when absent) the state in `directory`, which is created 0700.
    init(directory: String, segmentSize: Int64, access: StateStore.Access) throws(StateError) {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            do {
                try FileManager.default.createDirectory(
                    atPath: directory, withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o700])
            } catch {
                throw StateError(.unavailable, "cannot create the state directory \(directory): \(error.localizedDescription)")
            }
        } else if !isDirectory.boolValue {
            throw StateError(.incompatible, "state_directory \(directory) exists and is not a directory")
        }
        path = (directory as NSString).appendingPathComponent("state.sqlite")
        let moved = (directory as NSString).appendingPathComponent(StateMigration.movedMarker)
        if access == .owner, let text = try? String(contentsOfFile: moved, encoding: .utf8) {
            throw StateError(
                .incompatible,
                "the state in \(directory) was \(text.trimmingCharacters(in: .whitespacesAndNewlines)); set state_database in the configuration (a daemon here would deliver its queued alerts a second time), or delete \(moved) to use this state again"
            )
        }
        lock = access == .owner ? try DirectoryLock(directory: directory) : nil
        var configuration = GRDB.Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            let path = self.path
            pool = try Self.exclusively(lockFile: path + "-open-lock") {
                let pool = try DatabasePool(path: path, configuration: configuration)
                let check = try pool.read { db in try String.fetchOne(db, sql: "PRAGMA quick_check") }
                guard check == "ok" else { throw StateError(.corrupt, "integrity check failed: \(check ?? "no answer")") }
                try EmbeddedSchema.migrate(pool)
                return pool
            }
        } catch let error as StateError {
            throw StateError(
                error.kind,
                "the state database \(path) \(error.kind == .incompatible ? "cannot be used" : "is damaged") (\(error.description)); stop the daemon, move the file aside and start again to begin from `lookback` (alerts may be delivered again), or restore a backup"
            )
        } catch {
            let failure = Self.stateError(error, doing: "open")
            throw StateError(
                failure.kind,
                "cannot open the state database \(path): \(failure.description); check permissions and free space; it is never reset automatically")
        }
        log = try OutboxLog(directory: (directory as NSString).appendingPathComponent("outbox"), segmentSize: segmentSize)
        guard access == .owner else { return }
        let (end, oldest) = try readNow { db in (try EmbeddedOutbox.end(db), try Int64.fetchOne(db, sql: "SELECT min(segment) FROM sink_position")) }
        try log.recover(end: end, oldest: oldest ?? end.segment)
        try EmbeddedOutbox.convertOutboxTable(of: self)
    }

    /// Runs `body` while holding an exclusive lock on `lockFile` (flock(2), created 0600 beside
    /// the database). Two processes opening the same new state at once (the daemon's first
    /// start while `state show` opens it) both set up WAL and migrated the schema, and the
    /// second failed (`database is locked` on `PRAGMA journal_mode = WAL`, or `UNIQUE
    /// constraint failed: grdb_migrations.identifier`): the daemon ended, as make bench-smoke
    /// saw. Opening is short; the second now waits for the first, then finds it all done.
    static func exclusively<T>(lockFile: String, _ body: () throws -> T) throws -> T {
        let descriptor = Foundation.open(lockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw StateError(.unavailable, "cannot open \(lockFile): \(String(cString: strerror(errno)))")
        }
        defer { Foundation.close(descriptor) }
        while flock(descriptor, LOCK_EX) != 0 {
            guard errno == EINTR else { throw StateError(.unavailable, "cannot lock \(lockFile): \(String(cString: strerror(errno)))") }
        }
        defer { flock(descriptor, LOCK_UN) }
        return try body()
    }

    /// Writes the write-ahead log back into the database file and closes every connection (at
    /// the end of a run). A failure is left to the next start, which reads the log as SQLite
    /// always does.
    func close() async {
        await Blocking.run { () throws(Never) in
            // Closed even when the checkpoint fails (a reader still open): nothing to report.
            _ = try? self.pool.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
            try? self.pool.close()
        }
    }

    // MARK: Off the cooperative pool

    /// Runs `body` off the cooperative pool (``Blocking``), uninterrupted by cancellation.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws(StateError) -> T) async throws(StateError) -> T {
        try await Blocking.run(body)
    }

    /// A read transaction, off the cooperative pool.
    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(StateError) -> T {
        try await blocking { () throws(StateError) in try self.readNow(body) }
    }

    /// A write transaction, off the cooperative pool.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(StateError) -> T {
        try await blocking { () throws(StateError) in try self.writeNow(body) }
    }

    /// A write transaction that may append to the outbox log (`undo` is where the log goes
    /// back to if the transaction then fails, its commit included), off the cooperative pool.
    func writeQueuing<T: Sendable>(_ body: @escaping @Sendable (Database, inout LogPosition?) throws -> T) async throws(StateError) -> T {
        try await blocking { () throws(StateError) in try self.writeQueuingNow(body) }
    }

    /// A read transaction on the calling thread (opening, and work already off the pool).
    func readNow<T>(_ body: (Database) throws -> T) throws(StateError) -> T {
        do { return try pool.read(body) } catch { throw Self.stateError(error, doing: "read") }
    }

    func writeNow<T>(_ body: (Database) throws -> T) throws(StateError) -> T {
        do { return try pool.write(body) } catch { throw Self.stateError(error, doing: "write") }
    }

    func writeQueuingNow<T>(_ body: (Database, inout LogPosition?) throws -> T) throws(StateError) -> T {
        var undo: LogPosition?
        do {
            return try writeNow { db in try body(db, &undo) }
        } catch {
            if let undo { log.discard(after: undo) }
            throw error
        }
    }

    /// What a failure of SQLite means for the pipeline.
    static func stateError(_ error: any Error, doing what: String) -> StateError {
        if let error = error as? StateError { return error }
        guard let error = error as? DatabaseError else { return StateError(.unavailable, "state database \(what) failed: \(error)") }
        let kind: StateError.Kind
        switch error.resultCode {
        case .SQLITE_FULL: kind = .full
        case .SQLITE_CORRUPT, .SQLITE_NOTADB, .SQLITE_FORMAT: kind = .corrupt
        case .SQLITE_CONSTRAINT: kind = .conflict
        default: kind = .unavailable  // BUSY, LOCKED, IOERR, CANTOPEN, READONLY, NOMEM...
        }
        return StateError(kind, "state database \(what) failed: \(error)")
    }
}

/// The owner's exclusive lock on a state directory (`flock` on its `lock` file), held as long
/// as the value lives and released when the process ends, however it ends.
final class DirectoryLock: Sendable {
    private let descriptor: Int32

    /// Takes the lock, or says who has it.
    init(directory: String) throws(StateError) {
        let file = (directory as NSString).appendingPathComponent("lock")
        let descriptor = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw StateError.system("cannot open \(file)", errno: errno) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let failure =
                errno == EWOULDBLOCK
                ? StateError(
                    .inUse,
                    "another process (a running defender-alertd, or poll-once) is using the state directory \(directory); stop it first (`systemctl stop defender-alertd`)"
                )
                : StateError.system("cannot lock \(file)", errno: errno)
            close(descriptor)
            throw failure
        }
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }
}
