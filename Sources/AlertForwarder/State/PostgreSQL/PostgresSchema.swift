import Logging
import PostgresNIO

/// The PostgreSQL tables, by version, applied in one transaction under an advisory lock (a
/// group starting together migrates once). A schema newer than this binary is refused by name.
enum PostgresSchema {
    /// Any number that no other application of the database uses for its advisory locks.
    static let lockKey: Int64 = 0x6465_6661_6C72_7464  // "defalrtd"

    static let migrations: [(version: Int64, name: String, sql: [String])] = [
        (
            1, "v1-state",
            [
                // Watermarks and dedup keys. Keys sort bytewise (COLLATE "C"): the versions of one
                // alert ("id", "id|ticks") are then a range of the primary key.
                """
                CREATE TABLE cursor (
                    tenant text PRIMARY KEY,
                    watermark bigint NOT NULL,
                    watermark_text text NOT NULL,
                    updated_at text NOT NULL
                )
                """,
                """
                CREATE TABLE seen (
                    tenant text NOT NULL,
                    key text COLLATE "C" NOT NULL,
                    alert_id text NOT NULL,
                    recorded_at bigint NOT NULL,
                    PRIMARY KEY (tenant, key)
                )
                """,
                // Each alert once, with its headline; a row per sink that has yet to take it.
                """
                CREATE TABLE outbox (
                    id bigserial PRIMARY KEY,
                    tenant text NOT NULL,
                    alert_id text NOT NULL,
                    event text NOT NULL,
                    received_at text NOT NULL,
                    severity text,
                    title text,
                    host text,
                    status text,
                    last_update_time text,
                    payload bytea NOT NULL
                )
                """,
                """
                CREATE TABLE outbox_pending (
                    sink text NOT NULL,
                    id bigint NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
                    tenant text NOT NULL,
                    PRIMARY KEY (sink, id)
                )
                """,
                "CREATE INDEX outbox_pending_by_id ON outbox_pending (id)",
                """
                CREATE TABLE dead_letter (
                    id bigserial PRIMARY KEY,
                    sink text NOT NULL,
                    tenant text NOT NULL,
                    alert_id text NOT NULL,
                    event text NOT NULL,
                    received_at text NOT NULL,
                    payload bytea NOT NULL,
                    reason text NOT NULL,
                    failed_at text NOT NULL,
                    requeue boolean NOT NULL DEFAULT false
                )
                """,
                "CREATE INDEX dead_letter_by_sink ON dead_letter (sink, requeue)",
                // An element is kept once: by its digest (an index holds no large value).
                """
                CREATE TABLE quarantine (
                    id bigserial PRIMARY KEY,
                    tenant text NOT NULL,
                    raw bytea NOT NULL,
                    raw_digest bytea NOT NULL,
                    reason text NOT NULL,
                    quarantined_at text NOT NULL,
                    UNIQUE (tenant, raw_digest)
                )
                """,
                """
                CREATE TABLE reconciliation (
                    tenant text PRIMARY KEY,
                    due_at double precision NOT NULL,
                    swept_at double precision,
                    found bigint
                )
                """,
            ]
        ),
        (
            2, "v2-group",
            [
                // The daemons of the group, each renewing its row every third of lease_ttl. A
                // name is one running process at a time: its incarnation is random at each start.
                """
                CREATE TABLE member (
                    id text PRIMARY KEY,
                    incarnation text NOT NULL,
                    started_at timestamptz NOT NULL,
                    renewed_at timestamptz NOT NULL,
                    expires_at timestamptz NOT NULL
                )
                """,
                // Who polls each tenant, until when (the database's clock), and the fencing token:
                // one more at every change of holder; every write of a poller names it.
                """
                CREATE TABLE lease (
                    tenant text PRIMARY KEY,
                    holder text,
                    holder_incarnation text,
                    epoch bigint NOT NULL,
                    expires_at timestamptz NOT NULL,
                    acquired_at timestamptz NOT NULL
                )
                """,
            ]
        ),
        (
            3, "v3-user-tokens",
            [
                // A signed-in user's refresh token per tenant (auth = "delegated"), always sealed
                // (the token key): the holder of the tenant's lease replaces it at each rotation.
                """
                CREATE TABLE user_token (
                    tenant text PRIMARY KEY,
                    sealed bytea NOT NULL,
                    updated_at timestamptz NOT NULL
                )
                """
            ]
        ),
        (
            4, "v4-incidents",
            [
                // What a queued or dead record is: an alert, or an incident. (The cursor and keys of
                // a tenant's incidents are kept under "NAME/incidents".)
                "ALTER TABLE outbox ADD COLUMN kind text NOT NULL DEFAULT 'alert'",
                "ALTER TABLE dead_letter ADD COLUMN kind text NOT NULL DEFAULT 'alert'",
            ]
        ),
    ]

    static func migrate(_ database: StateDatabase) async throws {
        let logger = database.logger
        // Bounded as every call, longer than the lock wait below; the pool's first connection
        // may take longer than a call's wait for one (the server was reached just before).
        try await database.bounded("schema migration", connectionWait: .seconds(30), deadline: .seconds(150)) { connection in
            try await connection.transaction(logger: logger) { connection in
                // Members starting together wait for each other's migration, longer than the
                // lock_timeout and statement_timeout that bound the daemon's other waits (a
                // wait for the advisory lock is a statement: 30 s would cut it first).
                try await connection.run("SET LOCAL lock_timeout = '120s'", logger: logger)
                try await connection.run("SET LOCAL statement_timeout = '130s'", logger: logger)
                // A group member's sessions end a transaction idle for half of lease_ttl; the
                // migration holds no lease, and a host loaded at start may pause between its
                // statements longer than that.
                try await connection.run("SET LOCAL idle_in_transaction_session_timeout = '130s'", logger: logger)
                try await connection.run("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger)
                try await connection.run(
                    """
                    CREATE TABLE IF NOT EXISTS defender_alertd_schema (
                        version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                    """, logger: logger)
                var applied: [Int64: String] = [:]
                for try await (version, name) in try await connection.query("SELECT version, name FROM defender_alertd_schema", logger: logger)
                    .decode((Int64, String).self)
                {
                    applied[version] = name
                }
                let known = Set(migrations.map(\.version))
                let unknown = applied.filter { !known.contains($0.key) }.values.sorted()
                guard unknown.isEmpty else {
                    throw StateError(
                        .incompatible,
                        "the PostgreSQL state was written by a newer version of defender-alertd (it has the migrations \(unknown.joined(separator: ", ")), which this one does not know); run that version, or a database of its own"
                    )
                }
                for migration in migrations where applied[migration.version] == nil {
                    for statement in migration.sql {
                        try await connection.run(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await connection.run(
                        "INSERT INTO defender_alertd_schema (version, name) VALUES (\(migration.version), \(migration.name))", logger: logger)
                    logger.notice("PostgreSQL state schema migrated", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
                }
            }
        }
    }
}
