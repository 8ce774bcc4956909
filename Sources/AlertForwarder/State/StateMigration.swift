import Crypto
import Foundation
import GRDB
import Logging
import NIOCore
import PostgresNIO
import Timekeeping

/// `defender-alertd state migrate`: moves an embedded state (`state_directory`) into an empty
/// PostgreSQL state, in one transaction: watermarks, dedup keys, every alert still queued with
/// the sinks still waiting for it (in order, its sequence number kept as its id), dead letters
/// (re-queue marks kept), quarantine, sweep schedules and the signed-in users' refresh tokens
/// (sealed: as they are, or sealed on the way with the token key). Nothing is lost and nothing is
/// delivered again. The embedded state is then marked moved, and a daemon refuses to use it
/// (a daemon still configured for it would deliver its queued alerts a second time).
public enum StateMigration {
    /// What was moved.
    public struct Summary: Sendable, Equatable, CustomStringConvertible {
        public var tenants = 0
        public var dedupKeys = 0
        public var queuedAlerts = 0
        public var queuedForSinks = 0
        public var deadLetters = 0
        public var quarantined = 0
        public var userTokens = 0

        public var description: String {
            "\(tenants) tenants' watermarks, \(dedupKeys) dedup keys, \(queuedAlerts) queued alerts (\(queuedForSinks) deliveries still to make), \(deadLetters) dead letters, \(quarantined) quarantined elements, \(userTokens) signed-in users' refresh tokens"
        }
    }

    /// The file that marks a state directory moved to PostgreSQL.
    public static let movedMarker = "MOVED-TO-POSTGRESQL"

    /// Moves the embedded state in `directory` into `database` (running, its schema migrated),
    /// which must hold no state yet. The daemon must be stopped (the directory is locked).
    /// `userTokens`: the delegated tenants' seals (their tenant, app and the token key): each
    /// one's refresh token in `user-tokens/` moves too, sealed.
    public static func embeddedToPostgres(
        directory: String, database: StateDatabase,
        userTokens: [RefreshTokenSeal] = []
    ) async throws(StateError) -> Summary {
        let embedded = try EmbeddedDatabase(directory: directory, segmentSize: 64 << 20, access: .owner)
        var source = try await read(embedded)
        source.tokens = try sealedTokens(in: directory, userTokens)
        source.summary.userTokens = source.tokens.count
        let existing = try await database.query(
            "migration check",
            """
            SELECT (SELECT count(*) FROM cursor) + (SELECT count(*) FROM seen) + (SELECT count(*) FROM outbox) + (SELECT count(*) FROM dead_letter)
            """)
        guard (try decodeFirst(existing, as: Int64.self) ?? 0) == 0 else {
            throw StateError(
                .conflict,
                "the PostgreSQL database already holds a state (watermarks, dedup keys, queued alerts or dead letters); migrate into an empty database"
            )
        }
        let logger = database.logger
        try await database.transaction("migration") { [source] connection in try await write(source, on: connection, logger: logger) }
        let marker = (directory as NSString).appendingPathComponent(movedMarker)
        let text = "moved to \(database.settings.url) on \(Timestamp(Date()).writtenWith(0)) by `defender-alertd state migrate`\n"
        guard FileManager.default.createFile(atPath: marker, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw StateError(
                .unavailable,
                "the state is in PostgreSQL now, but \(marker) cannot be written: do not start a daemon on \(directory) again, it would deliver its queued alerts a second time"
            )
        }
        return source.summary
    }

    /// Everything of the embedded state, read in one transaction (the log up to the end it commits).
    private struct Source: Sendable {
        var cursors: [(tenant: String, watermark: Int64, text: String, updatedAt: String)] = []
        var keys: [(tenant: String, key: String, alertID: String, recordedAt: Int64)] = []
        var schedules: [(tenant: String, due: Double, sweptAt: Double?, found: Int64?)] = []
        var quarantine: [(tenant: String, raw: Data, reason: String, at: String)] = []
        var deadLetters:
            [(
                sink: String, tenant: String, kind: String, alertID: String, event: String, receivedAt: String, payload: Data, reason: String,
                failedAt: String, requeue: Bool
            )] = []
        /// By sequence number: the record and the sinks still waiting for it.
        var queued: [Int64: (record: OutboxRecord, sinks: [String])] = [:]
        /// Sealed refresh tokens by tenant.
        var tokens: [(tenant: String, sealed: Data)] = []
        var summary = Summary()
    }

    /// The refresh tokens stored for `seals`' tenants, sealed: a sealed file as it is (the same
    /// form, bound to the same tenant and app), a plain one sealed now with the token key.
    private static func sealedTokens(in directory: String, _ seals: [RefreshTokenSeal]) throws(StateError) -> [(tenant: String, sealed: Data)] {
        var tokens: [(tenant: String, sealed: Data)] = []
        for seal in seals {
            let path = RefreshTokenStore(directory: directory, seal: seal).path
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            if data.starts(with: RefreshTokenSeal.sealedMagic) {
                tokens.append((seal.tenant, data))
                continue
            }
            guard seal.hasKey else {
                throw StateError(
                    .incompatible,
                    "\(path) is not sealed and no token key is configured: a refresh token goes into PostgreSQL sealed only; set token_key_credential (or token_key_file) and migrate again"
                )
            }
            do {
                tokens.append((seal.tenant, try seal.seal(try seal.open(data, at: path))))
            } catch {
                throw StateError(.incompatible, "\(error)")
            }
        }
        return tokens
    }

    private static func read(_ embedded: EmbeddedDatabase) async throws(StateError) -> Source {
        let log = embedded.log
        return try await embedded.read { db in
            var source = Source()
            for row in try Row.fetchAll(db, sql: "SELECT tenant, watermark, watermark_text, updated_at FROM cursor") {
                source.cursors.append((row["tenant"], row["watermark"], row["watermark_text"], row["updated_at"]))
            }
            for row in try Row.fetchAll(db, sql: "SELECT tenant, key, alert_id, recorded_at FROM seen") {
                source.keys.append((row["tenant"], row["key"], row["alert_id"], row["recorded_at"]))
            }
            for row in try Row.fetchAll(db, sql: "SELECT tenant, due_at, swept_at, found FROM reconciliation") {
                source.schedules.append((row["tenant"], row["due_at"], row["swept_at"], row["found"]))
            }
            for row in try Row.fetchAll(db, sql: "SELECT tenant, raw, reason, quarantined_at FROM quarantine ORDER BY id") {
                source.quarantine.append((row["tenant"], row["raw"], row["reason"], row["quarantined_at"]))
            }
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT sink, tenant, kind, alert_id, event, received_at, payload, reason, failed_at, requeue FROM dead_letter ORDER BY id
                    """)
            {
                source.deadLetters.append(
                    (
                        row["sink"], row["tenant"], row["kind"], row["alert_id"], row["event"], row["received_at"], row["payload"],
                        row["reason"], row["failed_at"], (row["requeue"] as Int64) != 0
                    ))
            }
            let end = try EmbeddedOutbox.end(db)
            for row in try Row.fetchAll(db, sql: "SELECT sink, segment, byte_offset, sequence FROM sink_position") {
                let sink: String = row["sink"]
                var position = LogPosition(segment: row["segment"], offset: row["byte_offset"], sequence: row["sequence"])
                while position.sequence < end.sequence {
                    let (records, next) = try log.read(sink: sink, from: position, to: end, limit: 10_000)
                    for record in records {
                        source.queued[record.id, default: (record, [])].sinks.append(sink)
                    }
                    guard next.sequence > position.sequence || next.segment != position.segment else { break }
                    position = next
                }
            }
            source.summary = Summary(
                tenants: source.cursors.count, dedupKeys: source.keys.count, queuedAlerts: source.queued.count,
                queuedForSinks: source.queued.values.reduce(0) { $0 + $1.sinks.count },
                deadLetters: source.deadLetters.count, quarantined: source.quarantine.count)
            return source
        }
    }

    private static func write(_ source: Source, on connection: PostgresConnection, logger: Logger) async throws {
        for token in source.tokens {
            try await connection.run(
                """
                INSERT INTO user_token (tenant, sealed, updated_at) VALUES (\(token.tenant), \(ByteBuffer(data: token.sealed)), now())
                """, logger: logger)
        }
        let cursors = source.cursors
        try await connection.run(
            """
            INSERT INTO cursor (tenant, watermark, watermark_text, updated_at)
            SELECT * FROM unnest(\(cursors.map(\.tenant))::text[], \(cursors.map(\.watermark))::bigint[], \(cursors.map(\.text))::text[],
                                 \(cursors.map(\.updatedAt))::text[])
            """, logger: logger)
        for start in stride(from: 0, to: source.keys.count, by: 10_000) {
            let keys = source.keys[start..<min(start + 10_000, source.keys.count)]
            try await connection.run(
                """
                INSERT INTO seen (tenant, key, alert_id, recorded_at)
                SELECT * FROM unnest(\(keys.map(\.tenant))::text[], \(keys.map(\.key))::text[], \(keys.map(\.alertID))::text[],
                                     \(keys.map(\.recordedAt))::bigint[])
                """, logger: logger)
        }
        for schedule in source.schedules {
            try await connection.run(
                """
                INSERT INTO reconciliation (tenant, due_at, swept_at, found) VALUES (\(schedule.tenant), \(schedule.due), \(schedule.sweptAt), \(schedule.found))
                """, logger: logger)
        }
        for element in source.quarantine {
            try await connection.run(
                """
                INSERT INTO quarantine (tenant, raw, raw_digest, reason, quarantined_at)
                VALUES (\(element.tenant), \(ByteBuffer(data: element.raw)), \(ByteBuffer(bytes: SHA256.hash(data: element.raw))), \(element.reason), \(element.at))
                ON CONFLICT DO NOTHING
                """, logger: logger)
        }
        for letter in source.deadLetters {
            try await connection.run(
                """
                INSERT INTO dead_letter (sink, tenant, kind, alert_id, event, received_at, payload, reason, failed_at, requeue)
                VALUES (\(letter.sink), \(letter.tenant), \(letter.kind), \(letter.alertID), \(letter.event), \(letter.receivedAt), \(ByteBuffer(data: letter.payload)),
                        \(letter.reason), \(letter.failedAt), \(letter.requeue))
                """, logger: logger)
        }
        // The queued alerts keep their sequence numbers as ids: the order each sink sees.
        let queued = source.queued.sorted { $0.key < $1.key }
        for start in stride(from: 0, to: queued.count, by: 1_000) {
            let chunk = queued[start..<min(start + 1_000, queued.count)]
            let records = chunk.map(\.value.record)
            let headlines = HeadlineColumns(records.map(\.headline), count: records.count)
            try await connection.run(
                """
                INSERT INTO outbox (id, tenant, kind, alert_id, event, received_at, severity, title, host, status, last_update_time, payload)
                SELECT i, t, k, a, e, r, nullif(sv, ''), nullif(ti, ''), nullif(ho, ''), nullif(st, ''), nullif(lu, ''), p
                FROM unnest(\(records.map(\.id))::bigint[], \(records.map(\.tenant))::text[], \(records.map(\.kind.rawValue))::text[],
                            \(records.map(\.alertID))::text[],
                            \(records.map(\.event))::text[], \(records.map(\.receivedAt))::text[], \(headlines.severity)::text[],
                            \(headlines.title)::text[], \(headlines.host)::text[], \(headlines.status)::text[], \(headlines.lastUpdateTime)::text[],
                            \(records.map { ByteBuffer(bytes: $0.payloadBytes) })::bytea[]) AS q(i, t, k, a, e, r, sv, ti, ho, st, lu, p)
                """, logger: logger)
            let pending = chunk.flatMap { entry in entry.value.sinks.map { (sink: $0, id: entry.key, tenant: entry.value.record.tenant) } }
            try await connection.run(
                """
                INSERT INTO outbox_pending (sink, id, tenant)
                SELECT * FROM unnest(\(pending.map(\.sink))::text[], \(pending.map(\.id))::bigint[], \(pending.map(\.tenant))::text[])
                """, logger: logger)
        }
        // New alerts are numbered after the moved ones.
        try await connection.run("SELECT setval(pg_get_serial_sequence('outbox', 'id'), greatest((SELECT max(id) FROM outbox), 1))", logger: logger)
    }
}
