import DefenderAPI
import Foundation
import NIOCore
import PostgresNIO
import Timekeeping

/// The outbox in PostgreSQL: each alert once (`outbox`, with its headline when a sink shows
/// it), a row per sink that has yet to take it (`outbox_pending`), read in the order admitted.
struct PostgresOutbox: OutboxStore {
    let database: StateDatabase
    /// In a group: a daemon delivers the alerts of the tenants it holds, so that each sink
    /// sees a tenant's alerts in order, from one daemon at a time.
    let fence: GroupFence?
    /// The alerts this daemon admitted lately: their bytes are not read back from the server.
    let recent: RecentPayloads

    /// Dead letters a person re-queued come first; then the outbox. One statement either way
    /// (the requeued letters, or when there are none the outbox's next records: a round trip
    /// per batch less than asking for each in turn). An outbox record's bytes come from
    /// ``recent`` when it holds them; the others are read by a second statement.
    func pending(sink: String, limit: Int) async throws(StateError) -> OutboxBatch {
        // In a group, the tenants whose lease the database says this daemon holds now (its
        // own memory may be stale: a daemon paused past its lease delivers nothing more).
        let (member, incarnation) = (fence?.member, fence?.incarnation ?? "")
        let limit = max(1, limit)
        let rows = try await database.query(
            "outbox read",
            """
            WITH held AS MATERIALIZED (
                SELECT tenant FROM lease WHERE holder = \(member) AND holder_incarnation = \(incarnation) AND expires_at > now()),
            requeued AS MATERIALIZED (
                SELECT id, tenant, kind, alert_id, event, received_at, payload FROM dead_letter
                WHERE sink = \(sink) AND requeue AND (\(member)::text IS NULL OR tenant IN (SELECT tenant FROM held))
                ORDER BY id LIMIT \(limit))
            SELECT * FROM (
                SELECT true AS requeued, id, tenant, kind, alert_id, event, received_at, NULL::text AS severity, NULL::text AS title,
                    NULL::text AS host, NULL::text AS status, NULL::text AS last_update_time, payload
                FROM requeued
                UNION ALL
                (SELECT false, o.id, o.tenant, o.kind, o.alert_id, o.event, o.received_at, o.severity, o.title, o.host, o.status, o.last_update_time, NULL
                FROM outbox_pending p JOIN outbox o ON o.id = p.id
                WHERE NOT EXISTS (SELECT 1 FROM requeued) AND p.sink = \(sink)
                    AND (\(member)::text IS NULL OR p.tenant IN (SELECT tenant FROM held))
                ORDER BY p.id LIMIT \(limit))) AS next
            ORDER BY id
            """)
        var requeued = false
        var records = try decode("outbox read") {
            try rows.map { row in
                var columns = RowColumns(row)
                requeued = try columns.next(Bool.self)
                let (id, tenant, kind) = try (columns.next(Int64.self), columns.next(String.self), columns.next(String.self))
                let (alertID, event, receivedAt) = try (columns.next(String.self), columns.next(String.self), columns.next(String.self))
                let (severity, title, host, status, lastUpdateTime) = try (
                    columns.next(String?.self), columns.next(String?.self), columns.next(String?.self),
                    columns.next(String?.self), columns.next(String?.self)
                )
                // Stored without a headline (no sink showed it then): read from the payload if asked.
                let headline = lastUpdateTime.map {
                    AlertHeadline(givenSeverity: severity, givenTitle: title, host: host, status: status, lastUpdateTime: $0)
                }
                return OutboxRecord(
                    id: id, sink: sink, tenant: tenant, alertID: alertID, event: event, receivedAt: receivedAt, headline: headline,
                    payloadBytes: try columns.bytes(orNull: requeued ? nil : []), kind: RecordKind(stored: kind))
            }
        }
        if !requeued, !records.isEmpty { records = try await withPayloads(records) }
        return OutboxBatch(sink: sink, records: records, receipt: requeued ? .requeued : .rows)
    }

    /// The records with their bytes: from ``recent``, else read from `outbox`. A record whose
    /// alert is no longer there was taken meanwhile by every sink (this sink included: by
    /// another member of the group, whose lease it was), and is left out.
    private func withPayloads(_ records: [OutboxRecord]) async throws(StateError) -> [OutboxRecord] {
        var payloads = recent.payloads(records.map(\.id))
        let missing = records.map(\.id).filter { payloads[$0] == nil }
        if !missing.isEmpty {
            let rows = try await database.query("outbox read", "SELECT id, payload FROM outbox WHERE id = ANY(\(missing)::bigint[])")
            try decode("outbox read") {
                for row in rows {
                    var columns = RowColumns(row)
                    payloads[try columns.next(Int64.self)] = try columns.bytes()
                }
            }
        }
        return records.compactMap { record in payloads[record.id].map { record.with(payloadBytes: $0) } }
    }

    func confirm(_ batch: OutboxBatch, rejected: [SinkRejection], now: Date) async throws(StateError) {
        guard batch.advances else { return }
        let failedAt = Timestamp(now).description
        let logger = database.logger
        let sink = batch.sink
        let ids = batch.records.map(\.id)
        let refused = Dictionary(rejected.map { ($0.recordID, $0.reason) }, uniquingKeysWith: { first, _ in first })
        switch batch.receipt {
        case .log:
            throw StateError(.incompatible, "a batch read from the embedded outbox cannot be confirmed in PostgreSQL")
        case .requeued:
            try await database.transaction("dead letter confirmation") { connection in
                let again = batch.records.filter { refused[$0.id] != nil }
                try await connection.run(
                    "DELETE FROM dead_letter WHERE sink = \(sink) AND requeue AND id = ANY(\(ids.filter { refused[$0] == nil })::bigint[])",
                    logger: logger)
                if !again.isEmpty {
                    try await connection.run(
                        """
                        UPDATE dead_letter SET requeue = false, failed_at = \(failedAt), reason = r.reason
                        FROM unnest(\(again.map(\.id))::bigint[], \(again.map { refused[$0.id] ?? "" })::text[]) AS r(id, reason)
                        WHERE dead_letter.id = r.id AND dead_letter.sink = \(sink) AND dead_letter.requeue
                        """, logger: logger)
                }
            }
        case .rows:
            // Each statement on its own, committed at once, on one connection. The alerts every
            // sink has taken are deleted after the sink's rows are committed gone: of two sinks
            // confirming the same alerts at once, the later check sees both sinks' rows gone
            // (in one transaction each, both checks ran before either commit, saw the other
            // sink's rows still there, and neither deleted the alert). The check takes the
            // whole batch, not only the rows this call removed: a confirmation retried after a
            // failure between the two still deletes what every sink has taken.
            try await database.onConnection("outbox confirmation") { connection in
                if rejected.isEmpty {
                    try await connection.run("DELETE FROM outbox_pending WHERE sink = \(sink) AND id = ANY(\(ids)::bigint[])", logger: logger)
                } else {
                    try await connection.transaction(logger: logger) { connection in
                        // Only the rows still there count (a batch confirmed twice moves nothing twice).
                        var taken = Set<Int64>()
                        for try await id in try await connection.query(
                            """
                            DELETE FROM outbox_pending WHERE sink = \(sink) AND id = ANY(\(ids)::bigint[]) RETURNING id
                            """, logger: logger
                        ).decode(Int64.self) {
                            taken.insert(id)
                        }
                        let letters = batch.records.filter { taken.contains($0.id) && refused[$0.id] != nil }
                        guard !letters.isEmpty else { return }
                        try await connection.run(
                            """
                            INSERT INTO dead_letter (sink, tenant, kind, alert_id, event, received_at, payload, reason, failed_at)
                            SELECT \(sink), t, k, a, e, r, p, why, \(failedAt)
                            FROM unnest(\(letters.map(\.tenant))::text[], \(letters.map(\.kind.rawValue))::text[], \(letters.map(\.alertID))::text[],
                                        \(letters.map(\.event))::text[], \(letters.map(\.receivedAt))::text[],
                                        \(letters.map { ByteBuffer(bytes: $0.payloadBytes) })::bytea[],
                                        \(letters.map { refused[$0.id] ?? "" })::text[]) WITH ORDINALITY AS l(t, k, a, e, r, p, why, n)
                            ORDER BY n
                            """, logger: logger)
                    }
                }
                recent.remove(
                    try await connection.array(
                        of: Int64.self,
                        """
                        WITH gone AS (
                            DELETE FROM outbox o WHERE o.id = ANY(\(ids)::bigint[]) AND NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.id = o.id)
                            RETURNING o.id)
                        SELECT array_agg(id) FROM gone
                        """, logger: logger))
            }
        }
    }

    func depth() async throws(StateError) -> [String: Int] {
        try await countsByName(database, "outbox depth", "SELECT sink, count(*) FROM outbox_pending GROUP BY sink")
    }

    func oldestPending(sink: String) async throws(StateError) -> Date? {
        try await pending(sink: sink, limit: 1).records.first.flatMap { Timestamp(parsing: $0.receivedAt)?.date }
    }

    func drop(except sinks: Set<String>) async throws(StateError) -> Int {
        let logger = database.logger
        return try await database.transaction("outbox drop") { connection in
            var dropped = 0
            for try await count in try await connection.query(
                """
                WITH removed AS (DELETE FROM outbox_pending WHERE NOT (sink = ANY(\(Array(sinks))::text[])) RETURNING id)
                SELECT count(*) FROM removed
                """, logger: logger
            ).decode(Int64.self) {
                dropped = Int(count)
            }
            try await connection.run("DELETE FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.id = o.id)", logger: logger)
            return dropped
        }
    }
}

/// The headline fields of many records as the arrays a statement binds (`unnest`); "" stands
/// for a field the alert does not have (arrays of text hold no NULL here; `nullif` reads it).
/// Records stored without a headline have every field "": a NULL `last_update_time`, which
/// every stored headline has, tells them apart when they are read.
struct HeadlineColumns {
    let severity, title, host, status, lastUpdateTime: [String]

    /// `headlines` for all `count` records, or none (empty).
    init(_ headlines: [AlertHeadline], count: Int) {
        func column(_ field: (AlertHeadline) -> String?) -> [String] {
            headlines.isEmpty ? Array(repeating: "", count: count) : headlines.map { field($0) ?? "" }
        }
        (severity, title, host, status) = (column(\.givenSeverity), column(\.givenTitle), column(\.host), column(\.status))
        lastUpdateTime = column(\.lastUpdateTime)
    }
}

/// Bytes as an element of a `bytea[]` parameter, written straight into the statement (a
/// `ByteBuffer` made of them first was a second copy of every alert admitted).
struct Bytea: PostgresArrayEncodable, PostgresNonThrowingEncodable {
    static var psqlType: PostgresDataType { .bytea }
    static var psqlFormat: PostgresFormat { .binary }
    static var psqlArrayType: PostgresDataType { .byteaArray }
    let bytes: Data

    init(_ bytes: Data) {
        self.bytes = bytes
    }

    func encode<JSONEncoder: PostgresJSONEncoder>(into buffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>) {
        buffer.writeBytes(bytes)
    }
}

/// A row's columns read in order, each with a decode of its own type: postgres-nio's decode of
/// a whole tuple instantiates generic metadata for every row (6 % of the daemon's CPU in a
/// backfill on PostgreSQL).
struct RowColumns {
    private var cells: PostgresRow.Iterator

    init(_ row: PostgresRow) {
        cells = row.makeIterator()
    }

    mutating func next<T: PostgresDecodable>(_: T.Type) throws -> T {
        try cell().decode(T.self, context: .default)
    }

    /// A `bytea` column's bytes, copied once; `null` when it is NULL (a NULL is an error when nil).
    mutating func bytes(orNull null: [UInt8]? = nil) throws -> [UInt8] {
        guard var bytes = try cell().bytes else {
            guard let null else { throw PostgresDecodingError.Code.missingData }
            return null
        }
        return bytes.readBytes(length: bytes.readableBytes) ?? []
    }

    private mutating func cell() throws -> PostgresCell {
        guard let cell = cells.next() else { throw PostgresDecodingError.Code.missingData }
        return cell
    }
}

/// Rows decoded, a decoding failure told as what it is.
func decode<T>(_ what: String, _ body: () throws -> T) throws(StateError) -> T {
    do { return try body() } catch {
        throw StateError(.incompatible, "PostgreSQL \(what): a row is not what this version expects (\(type(of: error)))")
    }
}
