import Foundation
import Synchronization
import Timekeeping

/// This daemon's leases, as it last confirmed them with the group's database: per tenant the
/// fencing token (epoch) and until when, on the local monotonic clock, the lease may be used.
///
/// That local deadline is kept short of the lease's end in the database (`lease_ttl` after
/// the renewal was *sent*), by a margin for clock rates: a daemon paused (SIGSTOP) or cut off
/// stops sending requests for a tenant before another daemon can have taken it. Every API
/// request of a tenant asks ``holds(_:)`` first (``LeaseGatedTransport``), and every write of
/// a poller carries the epoch, which the database checks (a stale one is refused).
public final class TenantLeases: Sendable {
    struct Lease: Equatable {
        var epoch: Int64
        var usableUntil: Duration
    }

    private struct State {
        var leases: [String: Lease] = [:]
        /// Tenants this daemon is handing over (rebalancing): no new poll starts.
        var releasing: Set<String> = []
        /// Polls and sweeps in progress, per tenant.
        var busy: [String: Int] = [:]
    }

    private let state = Mutex(State())
    /// Told the tenants each confirmation added (``whenTaken(_:)``).
    private let taken = Mutex<(@Sendable ([String]) -> Void)?>(nil)
    let clock: MonotonicClock
    /// The share of `lease_ttl` a lease is used for after its renewal was sent.
    static let usableShare = 0.8

    public init(clock: MonotonicClock) {
        self.clock = clock
    }

    /// Whether this daemon may poll `tenant` now.
    public func holds(_ tenant: String) -> Bool {
        let now = clock.now()
        return state.withLock { state in
            guard let lease = state.leases[tenant], !state.releasing.contains(tenant) else { return false }
            return now < lease.usableUntil
        }
    }

    /// The fencing token of a lease this daemon may use now, if any.
    public func epoch(of tenant: String) -> Int64? {
        let now = clock.now()
        return state.withLock { state in
            guard let lease = state.leases[tenant], now < lease.usableUntil else { return nil }
            return lease.epoch
        }
    }

    /// The tenants the database confirmed last, whether or not their local deadline passed.
    var confirmedTenants: Set<String> {
        state.withLock { Set($0.leases.keys) }
    }

    /// The tenants held now.
    public var held: [String] {
        let now = clock.now()
        return state.withLock { state in state.leases.filter { now < $0.value.usableUntil }.map(\.key).sorted() }
    }

    /// Marks a poll or sweep of `tenant` started; false (and nothing marked) when the lease
    /// is not held.
    public func begin(_ tenant: String) -> Bool {
        let now = clock.now()
        return state.withLock { state in
            guard let lease = state.leases[tenant], !state.releasing.contains(tenant), now < lease.usableUntil else { return false }
            state.busy[tenant, default: 0] += 1
            return true
        }
    }

    /// Marks a poll or sweep of `tenant` ended.
    public func end(_ tenant: String) {
        state.withLock { state in
            state.busy[tenant] = max(0, (state.busy[tenant] ?? 1) - 1)
        }
    }

    /// Records what the database confirmed, with the time the confirming request was sent.
    func confirmed(_ tenants: [String: Int64], sentAt: Duration, ttl: Duration) {
        let until = sentAt + ttl * Self.usableShare
        let added = state.withLock { state in
            let added = tenants.keys.filter { state.leases[$0] == nil }
            state.leases = tenants.mapValues { Lease(epoch: $0, usableUntil: until) }
            state.releasing.formIntersection(tenants.keys)
            return added
        }
        if !added.isEmpty, let taken = taken.withLock({ $0 }) { taken(added.sorted()) }
    }

    /// `handler` is told the tenants each confirmation adds (the pipeline polls them at once).
    public func whenTaken(_ handler: (@Sendable ([String]) -> Void)?) {
        taken.withLock { $0 = handler }
    }

    /// Stops new polls of `tenant`; whether none is running (then it can be released).
    func startReleasing(_ tenant: String) -> Bool {
        state.withLock { state in
            state.releasing.insert(tenant)
            return (state.busy[tenant] ?? 0) == 0
        }
    }

    /// Stops handing over `tenants`: the assignment gave them back to this daemon before they
    /// could be released (a poll was running), and their polls start again.
    func stopReleasing(_ tenants: some Sequence<String>) {
        state.withLock { $0.releasing.subtract(tenants) }
    }

    /// Forgets every lease (the database cannot be reached, or the daemon stops).
    func dropAll() {
        state.withLock { state in
            state.leases = [:]
            state.releasing = []
        }
    }
}

/// Who this daemon is in a group, and the leases that say for which tenants its pollers may
/// write (``PostgresAdmission`` checks the epoch in the transaction that writes).
public struct GroupFence: Sendable {
    /// The member's name (`member_name`, or the host's name and the process id).
    public let member: String
    /// This run of the process, random at each start: a name belongs to one running daemon
    /// at a time, and a lease to the run that took it (a second daemon started with the same
    /// `member_name`, or a restarted one, renews nothing of another's).
    public let incarnation: String
    public let leases: TenantLeases

    public init(member: String, incarnation: String = UUID().uuidString, leases: TenantLeases) {
        self.member = member
        self.incarnation = incarnation
        self.leases = leases
    }
}
