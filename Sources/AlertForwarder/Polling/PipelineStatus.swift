import DefenderAPI
import Foundation
import Synchronization
import Systemd
import Timekeeping

/// What the pipeline is doing, rendered into `STATUS=`: per tenant the last poll's result and
/// age and the alerts it brought, the outbox depth, failing sinks.
public final class PipelineStatus: Sendable {
    public enum PollResult: Sendable, Equatable {
        case polling(alertsSoFar: Int, window: String)
        case succeeded(newAlerts: Int)
        case paused(outbox: Int)
        case failed(String)
        /// In a group: another member holds the tenant's lease and polls it.
        case standby
    }

    private struct Tenant {
        /// The last poll that ended (succeeded, paused or failed), and when.
        var last: (result: PollResult, at: Duration)?
        /// The poll under way, if one is (alerts so far, window).
        var polling: (count: Int, window: String)?
        /// Since when its polls have failed, one after the other.
        var failingSince: Duration?
    }

    private struct State {
        var tenants: [String: Tenant] = [:]
        var tenantOrder: [String] = []
        var failingSinks: [String: (reason: String, since: Duration)] = [:]
        var deadLetters: [String: Int] = [:]
        var quarantined: [String: Int] = [:]
        var outbox = 0
        /// The streams configured (``retain(tenants:sinks:)``), polled yet or not.
        var configured = 0
    }

    private let state = Mutex(State())
    private let clock: MonotonicClock

    public init(clock: MonotonicClock) {
        self.clock = clock
    }

    /// A poll's progress or its end. A poll under way is shown beside the last one that ended,
    /// never instead of it: a long backfill does not hide that the poll before it failed, and
    /// "ok" stays readable while the next poll runs.
    public func record(tenant: String, _ result: PollResult) {
        let now = clock.now()
        // A reason is shown in `STATUS=` and `/healthz`: masked and printable from here on.
        let result = if case .failed(let reason) = result { PollResult.failed(SecretRedaction.shown(reason, limit: 500)) } else { result }
        state.withLock { state in
            if state.tenants[tenant] == nil { state.tenantOrder.append(tenant) }
            var entry = state.tenants[tenant] ?? Tenant()
            switch result {
            case .polling(let count, let window): entry.polling = (count, window)
            case .failed: entry = Tenant(last: (result, now), polling: nil, failingSince: entry.failingSince ?? now)
            case .succeeded, .paused, .standby: entry = Tenant(last: (result, now), polling: nil, failingSince: nil)
            }
            state.tenants[tenant] = entry
        }
    }

    public func sink(_ name: String, failing reason: String?) {
        let now = clock.now()
        state.withLock { state in
            guard let reason else { state.failingSinks[name] = nil; return }
            state.failingSinks[name] = (SecretRedaction.shown(reason, limit: 500), state.failingSinks[name]?.since ?? now)
        }
    }

    /// A tenant whose polls, or a sink whose deliveries, have failed one after the other for a while.
    public struct Failure: Sendable, Equatable {
        /// `poller:NAME` or `sink:NAME`, as the health monitor names components.
        public var component: String
        public var failingFor: Duration
        public var reason: String
    }

    /// The tenants and sinks that have kept failing for longer than `allowance`, by name.
    public func failures(longerThan allowance: Duration) -> [Failure] {
        let now = clock.now()
        return state.withLock { state in
            var failures: [Failure] = []
            for (name, tenant) in state.tenants {
                guard let since = tenant.failingSince, now - since > allowance, case .failed(let reason)? = tenant.last?.result else { continue }
                failures.append(Failure(component: "poller:\(name)", failingFor: now - since, reason: reason))
            }
            for (name, failing) in state.failingSinks where now - failing.since > allowance {
                failures.append(Failure(component: "sink:\(name)", failingFor: now - failing.since, reason: failing.reason))
            }
            return failures.sorted { $0.component < $1.component }
        }
    }

    /// How many of the sink's records wait in the dead-letter table.
    public func sink(_ name: String, deadLetters count: Int) {
        state.withLock { $0.deadLetters[name] = count == 0 ? nil : count }
    }

    /// How many elements of each tenant's API answers are in quarantine.
    public func quarantined(_ counts: [String: Int]) {
        state.withLock { $0.quarantined = counts.filter { $0.value > 0 } }
    }

    public func outbox(_ depth: Int) {
        state.withLock { $0.outbox = depth }
    }

    /// Forgets tenants and sinks that are no longer configured.
    public func retain(tenants: Set<String>, sinks: Set<String>) {
        state.withLock { state in
            state.configured = tenants.count
            state.tenantOrder.removeAll { !tenants.contains($0) }
            state.tenants = state.tenants.filter { tenants.contains($0.key) }
            state.failingSinks = state.failingSinks.filter { sinks.contains($0.key) }
            state.deadLetters = state.deadLetters.filter { sinks.contains($0.key) }
        }
    }

    /// Tenants shown one by one in `STATUS=`; with more, the line counts them (`STATUS=` is one
    /// line of `systemctl status`, not a table).
    public static let tenantsShownOneByOne = 10

    /// `contoso: ok 12s ago +3; fabrikam: FAILING 40s ago (...), polling (1200 alerts so far,
    /// window ≥ ...); outbox 0; sink archive FAILING; sink siem 2 dead letters; fabrikam 1
    /// quarantined`. Past ``tenantsShownOneByOne`` streams (a tenant's alerts, its incidents): `2000 streams: 1996 ok, 1 polling,
    /// 1 PAUSED (a), 2 FAILING (b, c); outbox 0; ...`.
    public var line: String {
        let now = clock.now()
        return state.withLock { state in
            let many = max(state.configured, state.tenantOrder.count) > Self.tenantsShownOneByOne
            var parts = many ? [Self.summary(of: state)] : Self.tenantParts(of: state, now: now)
            parts.append("outbox \(state.outbox)")
            for (sink, _) in state.failingSinks.sorted(by: { $0.key < $1.key }) { parts.append("sink \(sink) FAILING") }
            for (sink, count) in state.deadLetters.sorted(by: { $0.key < $1.key }) { parts.append("sink \(sink) \(count) dead letters") }
            if many {
                if !state.quarantined.isEmpty { parts.append("\(state.quarantined.count) tenants with quarantined elements") }
            } else {
                for tenant in state.tenantOrder { if let count = state.quarantined[tenant] { parts.append("\(tenant) \(count) quarantined") } }
            }
            return parts.joined(separator: "; ")
        }
    }

    private static func tenantParts(of state: State, now: Duration) -> [String] {
        var parts: [String] = []
        for tenant in state.tenantOrder {
            guard let entry = state.tenants[tenant] else { continue }
            var shown: [String] = []
            if let (result, at) = entry.last {
                let age = "\((now - at).components.seconds)s ago"
                switch result {
                case .succeeded(let count): shown.append("ok \(age) +\(count)")
                case .paused(let outbox): shown.append("PAUSED \(age) (outbox \(outbox) over max_outbox)")
                case .failed(let reason): shown.append("FAILING \(age) (\(reason.prefix(200)))")
                case .standby: shown.append("standby (another member of the group polls it)")
                case .polling: break  // never kept as the last result
                }
            }
            if let (count, window) = entry.polling { shown.append("polling (\(count) alerts so far, window \(window))") }
            parts.append("\(tenant): " + shown.joined(separator: ", "))
        }
        return parts
    }

    /// Many tenants counted by the result of their last poll, those failing or paused named
    /// (the first five of each).
    private static func summary(of state: State) -> String {
        var (ok, polling, standby) = (0, 0, 0)
        var waiting = max(0, state.configured - state.tenantOrder.count)
        var failing: [String] = [], paused: [String] = []
        for tenant in state.tenantOrder {
            guard let entry = state.tenants[tenant] else { continue }
            if entry.polling != nil { polling += 1 }
            switch entry.last?.result {
            case .succeeded?: ok += 1
            case .paused?: paused.append(tenant)
            case .failed?: failing.append(tenant)
            case .standby?: standby += 1
            case .polling?, nil: waiting += 1
            }
        }
        func named(_ count: Int, _ what: String, _ names: [String]) -> String {
            "\(count) \(what) (" + names.prefix(5).joined(separator: ", ") + (names.count > 5 ? ", ..." : "") + ")"
        }
        var shown = ["\(ok) ok"]
        if polling > 0 { shown.append("\(polling) polling") }
        if waiting > 0 { shown.append("\(waiting) not polled yet") }
        if standby > 0 { shown.append("\(standby) standby") }
        if !paused.isEmpty { shown.append(named(paused.count, "PAUSED", paused)) }
        if !failing.isEmpty { shown.append(named(failing.count, "FAILING", failing)) }
        return "\(max(state.configured, state.tenantOrder.count)) streams: " + shown.joined(separator: ", ")
    }
}
