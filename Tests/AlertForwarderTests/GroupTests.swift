import DefenderAPI
import Foundation
import Logging
import PostgresNIO
import Telemetry
import TestSupport
import Testing
import Timekeeping

@testable import AlertForwarder

@Suite("Tenant assignment")
struct TenantAssignmentTests {
    let tenants = (0..<600).map { "tenant-\($0)" }

    func counts(_ assignment: [String: String]) -> [String: Int] {
        assignment.values.reduce(into: [:]) { $0[$1, default: 0] += 1 }
    }

    @Test func everyTenantHasOneMemberAndEveryMemberItsShareToOne() {
        for members in [["a"], ["a", "b"], ["a", "b", "c"], ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]] {
            let assignment = TenantAssignment.assign(tenants: tenants, members: members)
            #expect(Set(assignment.keys) == Set(tenants))
            let loads = counts(assignment).values
            let share = Double(tenants.count) / Double(members.count)
            #expect(loads.max()! - loads.min()! <= 1, "\(members): \(counts(assignment))")
            // Within ±20 % of an even share, what the issue asks of a group.
            #expect(loads.allSatisfy { abs(Double($0) - share) <= share * 0.2 }, "\(members): \(counts(assignment))")
            #expect(Set(assignment.values) == Set(members))
        }
        #expect(TenantAssignment.assign(tenants: tenants, members: []).isEmpty)
        // Fewer tenants than members: some members get none, none gets two.
        #expect(counts(TenantAssignment.assign(tenants: ["x", "y"], members: ["a", "b", "c"])).values.sorted() == [1, 1])
    }

    @Test func everyMemberComputesTheSameWhateverTheOrderItLearntThingsIn() {
        let one = TenantAssignment.assign(tenants: tenants, members: ["c", "a", "b"])
        let other = TenantAssignment.assign(tenants: tenants.reversed(), members: ["b", "c", "a", "a"])
        #expect(one == other)
    }

    @Test func aMemberJoiningOrLeavingMovesLittleMoreThanItsShare() {
        let three = TenantAssignment.assign(tenants: tenants, members: ["a", "b", "c"])
        let four = TenantAssignment.assign(tenants: tenants, members: ["a", "b", "c", "d"])
        let moved = tenants.filter { three[$0] != four[$0] }.count
        // A fourth member's share is 150; a plain rendezvous moves exactly those.
        #expect(moved >= 150 && moved <= 150 * 3 / 2, "\(moved) tenants moved")
        let two = TenantAssignment.assign(tenants: tenants, members: ["a", "c"])
        let movedOnLeave = tenants.filter { three[$0] != two[$0] }.count
        #expect(movedOnLeave >= 200 && movedOnLeave <= 200 * 3 / 2, "\(movedOnLeave) tenants moved")
    }
}

@Suite("Group leases", .enabled(if: TestPostgres.isAvailable, TestPostgres.reason))
struct GroupLeaseTests {
    static let tenants = ["t1", "t2", "t3"]

    struct Member {
        let clock = ManualClock()
        let leases: TenantLeases
        let coordinator: GroupCoordinator
        let store: StateStore

        init(_ name: String, database: StateDatabase, ttl: Duration = .seconds(30)) {
            leases = TenantLeases(clock: clock.clock)
            let fence = GroupFence(member: name, leases: leases)
            coordinator = GroupCoordinator(
                fence: fence, database: database, ttl: ttl,
                metrics: GroupMetrics(telemetry: Telemetry()), logger: Logger(label: name))
            coordinator.setTenants(GroupLeaseTests.tenants)
            store = StateStore.postgres(database, fence: fence)
        }
    }

    /// The holder of each tenant in the database.
    static func holders(_ database: StateDatabase) async throws -> [String: String] {
        var holders: [String: String] = [:]
        for row in try await database.query("test", "SELECT tenant, holder FROM lease WHERE holder IS NOT NULL AND expires_at > now()") {
            let (tenant, holder) = try row.decode((String, String).self)
            holders[tenant] = holder
        }
        return holders
    }

    /// a holds every tenant, b joins; a begins handing b's share over while a poll of one of
    /// those tenants (`moving`) runs on a, so that it sends nothing more for it but keeps it.
    static func handOverDuringAPoll(_ database: StateDatabase) async throws -> (a: Member, b: Member, moving: String) {
        let a = Member("a", database: database), b = Member("b", database: database)
        try await a.coordinator.round()
        try await b.coordinator.round()
        let moving = try #require(TenantAssignment.assign(tenants: tenants, members: ["a", "b"]).first { $0.value == "b" }?.key)
        #expect(a.leases.begin(moving))  // a poll of it runs on a
        try await a.coordinator.round()
        #expect(!a.leases.holds(moving), "no new request once the hand-over began")
        return (a, b, moving)
    }

    @Test func aJoiningMemberGetsItsShareAndEachTenantHasOneHolder() async throws {
        try await TestPostgres.withState { _, database in
            let a = Member("a", database: database), b = Member("b", database: database)
            try await a.coordinator.round()
            #expect(a.leases.held == GroupLeaseTests.tenants)
            try await b.coordinator.round()  // sees two members; its share is still a's
            #expect(b.leases.held.isEmpty)
            try await a.coordinator.round()  // hands b's share over
            try await b.coordinator.round()  // takes it
            let holders = try await GroupLeaseTests.holders(database)
            #expect(Set(holders.keys) == Set(GroupLeaseTests.tenants))
            #expect(Set(a.leases.held).isDisjoint(with: b.leases.held))
            #expect(a.leases.held.count + b.leases.held.count == 3)
            #expect(a.leases.held.count >= 1 && b.leases.held.count >= 1)
            let expected = TenantAssignment.assign(tenants: GroupLeaseTests.tenants, members: ["a", "b"])
            #expect(holders == expected)
        }
    }

    @Test func aPollBeingHandedOverKeepsItsLeaseUntilItEnds() async throws {
        try await TestPostgres.withState { _, database in
            let (a, b, moving) = try await Self.handOverDuringAPoll(database)
            #expect(try await GroupLeaseTests.holders(database)[moving] == "a", "the lease stays while the poll runs")
            try await b.coordinator.round()
            #expect(!b.leases.held.contains(moving))
            a.leases.end(moving)
            try await a.coordinator.round()
            try await b.coordinator.round()
            #expect(b.leases.held.contains(moving))
        }
    }

    /// A hand-over that waits for a poll, then is undone because the assignment gives the
    /// tenant back (the member it was for left): the tenant is polled again. (It stayed marked
    /// for hand-over for good, neither polled nor released: a make test run lost 13 alerts of
    /// one tenant in the kill -9 row.)
    @Test func aHandOverUndoneByTheAssignmentLeavesTheTenantPolled() async throws {
        try await TestPostgres.withState { _, database in
            let (a, _, moving) = try await Self.handOverDuringAPoll(database)
            // b leaves before the poll ends: the tenant is a's again.
            _ = try await database.query("test", "UPDATE member SET expires_at = now() - interval '1 second' WHERE id = 'b'")
            try await a.coordinator.round()
            a.leases.end(moving)
            #expect(a.leases.holds(moving), "polled again, not stuck in a hand-over that will never come")
            try await a.coordinator.round()
            #expect(a.leases.held == GroupLeaseTests.tenants)
            #expect(try await GroupLeaseTests.holders(database)[moving] == "a")
        }
    }

    /// A daemon paused past its lease (SIGSTOP): its local deadline passed, so it sends
    /// nothing; and should it write anyway, the database refuses its old epoch.
    @Test func aMemberWhoseLeaseExpiredNeitherSendsNorWrites() async throws {
        try await TestPostgres.withState { _, database in
            let a = Member("a", database: database), b = Member("b", database: database)
            try await a.coordinator.round()
            #expect(a.leases.holds("t1"))
            // Time passes for a beyond 0.8 × ttl without a renewal: it stops sending.
            a.clock.advance(by: .seconds(25))
            #expect(!a.leases.holds("t1"))
            #expect(a.leases.epoch(of: "t1") == nil)
            // An admission then is refused before it writes.
            let refused = await #expect(throws: StateError.self) {
                _ = try await a.store.admission.admit(tenant: "t1", alerts: [try makeAlert("x", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["s"])
            }
            #expect(refused?.kind == .leaseLost)
            // Its leases expire in the database; b, alone alive, takes every tenant with a new epoch.
            a.clock.advance(by: .seconds(-25))
            _ = try await database.query("test", "UPDATE lease SET expires_at = now() - interval '1 second'")
            _ = try await database.query("test", "UPDATE member SET expires_at = now() - interval '1 second' WHERE id = 'a'")
            try await b.coordinator.round()
            #expect(b.leases.held == GroupLeaseTests.tenants)
            // a's memory still says it holds t1 (its clock says little time passed): the
            // database refuses the write of the old epoch.
            #expect(a.leases.holds("t1"))
            let fenced = await #expect(throws: StateError.self) {
                _ = try await a.store.admission.admit(tenant: "t1", alerts: [try makeAlert("y", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["s"])
            }
            #expect(fenced?.kind == .leaseLost)
            #expect(try await b.store.admission.watermark(tenant: "t1") == nil, "nothing of a's page was admitted")
            // b admits and delivers t1's alerts; a's next round learns it lost its leases.
            _ = try await b.store.admission.admit(tenant: "t1", alerts: [try makeAlert("z", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["s"])
            #expect(try await b.store.outbox.pending(sink: "s", limit: 10).records.map(\.alertID) == ["z"])
            #expect(try await a.store.outbox.pending(sink: "s", limit: 10).records.isEmpty, "a delivers only what it holds")
            try await a.coordinator.round()
            #expect(a.leases.held.isEmpty)
        }
    }

    /// A member paused in the middle of an admission (SIGSTOP) keeps its lease row locked on
    /// a connection that stays open, after its leases and membership expired. The others'
    /// rounds skip that row instead of waiting for the lock (10 s, then the whole round failed,
    /// renewals included: a CI run saw no take-over for the 15 s the member was stopped); they
    /// take it once the transaction ended.
    @Test func aLeaseLockedByAMemberPausedInATransactionHoldsUpNoRound() async throws {
        try await TestPostgres.withState { _, database in
            let a = Member("a", database: database), b = Member("b", database: database)
            try await a.coordinator.round()
            #expect(a.leases.held == GroupLeaseTests.tenants)
            _ = try await database.query("test", "UPDATE lease SET expires_at = now() - interval '1 second'")
            _ = try await database.query("test", "UPDATE member SET expires_at = now() - interval '1 second' WHERE id = 'a'")
            let (locked, lock) = AsyncStream.makeStream(of: Void.self)
            let (resume, resumer) = AsyncStream.makeStream(of: Void.self)
            let paused = Task {
                try await database.transaction("paused admission") { connection in
                    try await connection.run("SELECT 1 FROM lease WHERE tenant = 't1' FOR SHARE", logger: Logger(label: "a"))
                    lock.yield()
                    for await _ in resume { break }
                }
            }
            for await _ in locked { break }
            try await b.coordinator.round()
            #expect(b.leases.held == ["t2", "t3"], "the locked lease is skipped, the others taken")
            resumer.finish()
            try await paused.value
            try await b.coordinator.round()
            #expect(b.leases.held == GroupLeaseTests.tenants)
        }
    }

    /// In a group the server ends a transaction left idle for half of lease_ttl, 5 s at least
    /// (a member paused in it), with its locks, long before the call's own deadline (60 s here).
    @Test func aTransactionLeftIdleInAGroupIsEndedByTheServerWithinHalfTheLeaseTTL() async throws {
        try await TestPostgres.withState { _, database in
            let name = try #require(try await database.query("test", "SELECT current_database()").first?.decode(String.self))
            let member = try StateDatabase(
                settings: TestPostgres.settings(database: name, leaseTTL: .seconds(12)), member: "a",
                callDeadline: .seconds(60), logger: Logger(label: "a"))
            try await TestPostgres.run(member) {
                let limit = try await member.query("test", "SHOW idle_in_transaction_session_timeout").first?.decode(String.self)
                #expect(limit == "6s")
                let (resume, resumer) = AsyncStream.makeStream(of: Void.self)
                defer { resumer.finish() }
                let ended = await #expect(throws: StateError.self) {
                    try await member.transaction("paused") { connection in
                        try await connection.run("SELECT pg_advisory_xact_lock(42)", logger: Logger(label: "a"))
                        for await _ in resume { break }
                        throw CancellationError()  // sends nothing on the closed connection
                    }
                }
                #expect(ended?.kind == .unavailable)
                #expect(ended?.description.contains("closed under it") == true, "\(ended?.description ?? "")")
                let free = try await database.query("test", "SELECT pg_try_advisory_lock(42)").first?.decode(Bool.self)
                #expect(free == true, "the paused transaction's lock went with it")
            }
        }
    }

    /// A name is one running daemon: a second one started with the same `member_name` is
    /// refused while the first renews; once the first's row expired (killed, or paused), a
    /// new run under the name frees what the old run held and takes it again with a new
    /// epoch, so the old run, if it wakes, can neither write nor deliver.
    @Test func aMemberNameIsOneRunningDaemonAtATime() async throws {
        try await TestPostgres.withState { _, database in
            let first = Member("a", database: database), second = Member("a", database: database)
            try await first.coordinator.round()
            #expect(first.leases.held == GroupLeaseTests.tenants)
            let refused = await #expect(throws: StateError.self) { try await second.coordinator.round() }
            #expect(refused?.kind == .conflict)
            #expect(refused?.description.contains("member_name must be unique") == true)
            #expect(second.leases.held.isEmpty)
            #expect(try await first.store.outbox.pending(sink: "s", limit: 10).records.isEmpty)
            _ = try await first.store.admission.admit(tenant: "t1", alerts: [try makeAlert("x", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["s"])
            #expect(try await second.store.outbox.pending(sink: "s", limit: 10).records.isEmpty, "the second run delivers nothing of the first's")
            let oldEpoch = try #require(first.leases.epoch(of: "t1"))

            // The first run stops renewing (paused): its row and leases expire; the second takes the name.
            _ = try await database.query("test", "UPDATE lease SET expires_at = now() - interval '1 second'")
            _ = try await database.query("test", "UPDATE member SET expires_at = now() - interval '1 second'")
            try await second.coordinator.round()
            #expect(second.leases.held == GroupLeaseTests.tenants)
            #expect(try #require(second.leases.epoch(of: "t1")) > oldEpoch)
            #expect(try await second.store.outbox.pending(sink: "s", limit: 10).records.map(\.alertID) == ["x"])
            // The first wakes: its memory still holds t1 under the old epoch; nothing it writes or reads passes.
            #expect(first.leases.holds("t1"))
            let fenced = await #expect(throws: StateError.self) {
                _ = try await first.store.admission.admit(
                    tenant: "t1", alerts: [try makeAlert("y", "2025-03-14T10:00:00Z")], forward: .new, sinks: ["s"])
            }
            #expect(fenced?.kind == .leaseLost)
            #expect(try await first.store.outbox.pending(sink: "s", limit: 10).records.isEmpty)
            let renewal = await #expect(throws: StateError.self) { try await first.coordinator.round() }
            #expect(renewal?.kind == .conflict)
        }
    }
}
