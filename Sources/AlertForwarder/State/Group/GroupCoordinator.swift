import DefenderAPI
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization
import Systemd
import Telemetry
import Timekeeping

/// This daemon's membership of a group sharing one PostgreSQL state: every third of
/// `lease_ttl` it renews its member row and its leases, sees who else is alive, and takes or
/// hands over tenants so that each is polled by exactly one daemon and the tenants spread
/// evenly (``TenantAssignment``). All times that decide a lease are the database's clock.
///
/// A lease changes hands only once it is free or expired. A daemon hands a tenant over (a
/// member joined) only when no poll of it runs: it first stops starting polls, and the
/// database learns of the release in a later round. A daemon that stops gracefully releases
/// its leases at once; one killed, paused or cut off loses them when they expire.
///
/// A member name is one running daemon at a time: a second one started with the same
/// `member_name` is refused while the first renews its row, and a daemon restarted under its
/// old name first frees what its previous run held, so that each lease it takes again has a
/// new epoch (the previous run, if only paused, can then write nothing).
public final class GroupCoordinator: Service, Sendable {
    public let member: String
    let incarnation: String
    let database: StateDatabase
    let leases: TenantLeases
    /// The configured tenants (``setTenants(_:)``: a reload changes them).
    private let configured = Mutex<[String]>([])
    let ttl: Duration
    let metrics: GroupMetrics
    /// Where `STATUS=` shows the group (`group: 3 members, 200 tenants held`), if anywhere.
    let status: StatusLine?
    let logger: Logger

    public init(
        fence: GroupFence, database: StateDatabase, ttl: Duration, metrics: GroupMetrics,
        status: StatusLine? = nil, logger: Logger
    ) {
        self.member = fence.member
        self.incarnation = fence.incarnation
        self.database = database
        self.leases = fence.leases
        self.ttl = ttl
        self.metrics = metrics
        self.status = status
        var logger = logger
        logger[metadataKey: "member"] = "\(fence.member)"
        self.logger = logger
    }

    /// The tenants of the configuration in force.
    public func setTenants(_ tenants: [String]) {
        configured.withLock { $0 = tenants }
    }

    private func tenants() -> [String] {
        configured.withLock { $0 }
    }

    /// A name for this daemon in the group: the host's name and the process id.
    public static func defaultMemberName() -> String {
        "\(ProcessInfo.processInfo.hostName)-\(getpid())"
    }

    public func run() async throws {
        metrics.prepare(tenants: tenants())
        var failing = false
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await round()
                if failing { logger.notice("the group's leases are renewed again") }
                failing = false
            } catch {
                metrics.failed(kind: error.kind.rawValue)
                status?.set(
                    "group",
                    "group: PostgreSQL UNAVAILABLE (\(SecretRedaction.shown(error.description, limit: 200))); polling stops as leases run out")
                if !failing {
                    logger.error(
                        "the group's leases cannot be renewed; this daemon stops polling its tenants when they run out, and goes on trying",
                        metadata: ["error": "\(error)"])
                }
                failing = true
            }
            _ = await cancelWhenGracefulShutdown { [clock = leases.clock, ttl] in try? await clock.sleep(ttl / 3) }
        }
        await leaveGroup()
    }

    /// One renewal: membership, the leases held, who is alive; then hand over or take tenants.
    func round() async throws(StateError) {
        let sentAt = leases.clock.now()
        let seconds = ttl.inSeconds
        let (member, incarnation, logger) = (self.member, self.incarnation, self.logger)
        let (renewed, members, holders) = try await database.transaction("lease renewal") { connection in
            try await Self.renewMembership(member, incarnation: incarnation, seconds: seconds, connection: connection, logger: logger)
            try await connection.run("DELETE FROM member WHERE expires_at < now() - interval '1 day'", logger: logger)
            var renewed: [String: Int64] = [:]
            for try await (tenant, epoch) in try await connection.query(
                """
                UPDATE lease SET expires_at = now() + make_interval(secs => \(seconds))
                WHERE holder = \(member) AND holder_incarnation = \(incarnation) AND expires_at > now() RETURNING tenant, epoch
                """, logger: logger
            ).decode((String, Int64).self) {
                renewed[tenant] = epoch
            }
            var members: [String] = []
            for try await id in try await connection.query("SELECT id FROM member WHERE expires_at > now()", logger: logger).decode(String.self) {
                members.append(id)
            }
            var holders: [String: String] = [:]
            for try await (tenant, holder) in try await connection.query(
                """
                SELECT tenant, holder FROM lease WHERE holder IS NOT NULL AND expires_at > now()
                """, logger: logger
            ).decode((String, String).self) {
                holders[tenant] = holder
            }
            return (renewed, members, holders)
        }
        let before = leases.confirmedTenants
        let lost = before.subtracting(renewed.keys)
        if !lost.isEmpty {
            logger.warning(
                "leases lost: not renewed in time (this daemon was paused, or cut off from PostgreSQL); the group gives these tenants to a member that can renew them",
                metadata: ["tenants": "\(lost.sorted().joined(separator: ","))"])
            metrics.leases("lost", count: lost.count)
        }
        var held = renewed
        // Confirmed at once: what follows may fail, and these are renewed whatever it does.
        leases.confirmed(held, sentAt: sentAt, ttl: ttl)
        let configured = tenants()
        let target = TenantAssignment.assign(tenants: configured, members: members)
        // Keep what is this daemon's again: a hand-over begun while a poll ran, then undone by
        // the assignment (members came and went), must not leave the tenant unpolled for good.
        leases.stopReleasing(held.keys.filter { target[$0] == member })
        // Hand over what is no longer this daemon's (or no longer configured), once idle.
        var released: [String: Int64] = [:]
        for (tenant, epoch) in held where target[tenant] != member && leases.startReleasing(tenant) {
            released[tenant] = epoch
        }
        if !released.isEmpty {
            try await database.transaction("lease release") { [released] connection in
                for (tenant, epoch) in released {
                    try await connection.run(
                        """
                        UPDATE lease SET holder = NULL, holder_incarnation = NULL, expires_at = now()
                        WHERE tenant = \(tenant) AND holder = \(member) AND holder_incarnation = \(incarnation) AND epoch = \(epoch)
                        """, logger: logger)
                }
            }
            for tenant in released.keys { held[tenant] = nil }
            leases.confirmed(held, sentAt: sentAt, ttl: ttl)
            logger.notice("tenants handed over to rebalance the group", metadata: ["tenants": "\(released.keys.sorted().joined(separator: ","))"])
            metrics.leases("released", count: released.count)
        }
        // Take what is this daemon's and free (a holder still alive hands it over first).
        let wanted = configured.filter { target[$0] == member && held[$0] == nil && holders[$0] == nil }
        if !wanted.isEmpty {
            let acquired = try await database.transaction("lease acquisition") { connection in
                // A free lease row another transaction holds is skipped, not waited for: that
                // of a member paused in the middle of one (an admission locks its lease row),
                // which the server ends after half of lease_ttl (``StateDatabase``). A later
                // round takes it; waiting would hold up this whole round, renewals included.
                let existing = Set(
                    try await connection.array(
                        of: String.self, "SELECT array_agg(tenant) FROM lease WHERE tenant = ANY(\(wanted))",
                        logger: logger))
                let lockable = Set(
                    try await connection.array(
                        of: String.self,
                        """
                        SELECT array_agg(tenant) FROM (SELECT tenant FROM lease
                            WHERE tenant = ANY(\(wanted)) AND (holder IS NULL OR expires_at <= now()) FOR UPDATE SKIP LOCKED) AS free
                        """, logger: logger))
                var acquired: [String: Int64] = [:]
                for tenant in wanted where lockable.contains(tenant) || !existing.contains(tenant) {
                    for try await epoch in try await connection.query(
                        """
                        INSERT INTO lease (tenant, holder, holder_incarnation, epoch, expires_at, acquired_at)
                        VALUES (\(tenant), \(member), \(incarnation), 1, now() + make_interval(secs => \(seconds)), now())
                        ON CONFLICT (tenant) DO UPDATE SET holder = excluded.holder, holder_incarnation = excluded.holder_incarnation,
                            epoch = lease.epoch + 1,
                            expires_at = excluded.expires_at, acquired_at = now()
                        WHERE lease.holder IS NULL OR lease.expires_at <= now()
                        RETURNING epoch
                        """, logger: logger
                    ).decode(Int64.self) {
                        acquired[tenant] = epoch
                    }
                }
                return acquired
            }
            held.merge(acquired) { _, new in new }
            if !acquired.isEmpty {
                logger.notice("tenants taken: this daemon polls them now", metadata: ["tenants": "\(acquired.keys.sorted().joined(separator: ","))"])
                metrics.leases("acquired", count: acquired.count)
            }
        }
        leases.confirmed(held, sentAt: sentAt, ttl: ttl)
        status?.set("group", "group: \(members.count) members, \(held.count) of \(configured.count) tenants held")
        metrics.round(duration: leases.clock.now() - sentAt, members: members.count, held: Set(held.keys), tenants: configured)
    }

    /// Renews this daemon's member row, or takes the name: new, or left expired by an earlier
    /// run (whose leases are then freed, so that taking one again moves its epoch on). Refused
    /// while another running daemon renews the name.
    private static func renewMembership(
        _ member: String, incarnation: String, seconds: Double, connection: PostgresConnection,
        logger: Logger
    ) async throws {
        var current: (incarnation: String, alive: Bool, startedAt: String)?
        for try await row in try await connection.query(
            """
            SELECT incarnation, expires_at > now(), to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            FROM member WHERE id = \(member) FOR UPDATE
            """, logger: logger
        ).decode((String, Bool, String).self) {
            current = row
        }
        if let current, current.incarnation == incarnation {
            try await connection.run(
                """
                UPDATE member SET renewed_at = now(), expires_at = now() + make_interval(secs => \(seconds)) WHERE id = \(member)
                """, logger: logger)
            return
        }
        if let current, current.alive {
            throw StateError(
                .conflict,
                "another running daemon has the member name '\(member)' (started at \(current.startedAt)): member_name must be unique in the group; this daemon polls nothing until that one stops"
            )
        }
        try await connection.run(
            """
            INSERT INTO member (id, incarnation, started_at, renewed_at, expires_at)
            VALUES (\(member), \(incarnation), now(), now(), now() + make_interval(secs => \(seconds)))
            ON CONFLICT (id) DO UPDATE SET incarnation = excluded.incarnation, started_at = now(), renewed_at = now(),
                expires_at = excluded.expires_at
            """, logger: logger)
        try await connection.run(
            """
            UPDATE lease SET holder = NULL, holder_incarnation = NULL, expires_at = now() WHERE holder = \(member)
            """, logger: logger)
    }

    /// Leaves the group at a graceful stop: its leases free at once, its member row gone, so
    /// that the others take its tenants in their next round instead of after `lease_ttl`.
    private func leaveGroup() async {
        let held = leases.held
        leases.dropAll()
        let (member, incarnation, logger) = (self.member, self.incarnation, self.logger)
        do {
            // Soon or never: the leases expire by themselves, and a stop must not wait for a
            // server that does not answer.
            try await database.transaction("leaving the group", deadline: .seconds(5)) { connection in
                try await connection.run(
                    """
                    UPDATE lease SET holder = NULL, holder_incarnation = NULL, expires_at = now()
                    WHERE holder = \(member) AND holder_incarnation = \(incarnation)
                    """, logger: logger)
                try await connection.run("DELETE FROM member WHERE id = \(member) AND incarnation = \(incarnation)", logger: logger)
            }
            logger.notice("left the group; its tenants are free for the others", metadata: ["tenants": "\(held.count)"])
        } catch {
            logger.warning("could not leave the group; its leases expire within lease_ttl", metadata: ["error": "\(error)"])
        }
    }
}
