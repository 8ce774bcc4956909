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
    }

    private struct State {
        var tenants: [String: (result: PollResult, at: Duration)] = [:]
        var tenantOrder: [String] = []
        var failingSinks: [String: String] = [:]
        var deadLetters: [String: Int] = [:]
        var quarantined: [String: Int] = [:]
        var outbox = 0
    }

    private let state = Mutex(State())
    private let clock: MonotonicClock

    public init(clock: MonotonicClock) {
        self.clock = clock
    }

    public func record(tenant: String, _ result: PollResult) {
        let now = clock.now()
        state.withLock { state in
            if state.tenants[tenant] == nil { state.tenantOrder.append(tenant) }
            state.tenants[tenant] = (result, now)
        }
    }

    public func sink(_ name: String, failing reason: String?) {
        state.withLock { $0.failingSinks[name] = reason }
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
            state.tenantOrder.removeAll { !tenants.contains($0) }
            state.tenants = state.tenants.filter { tenants.contains($0.key) }
            state.failingSinks = state.failingSinks.filter { sinks.contains($0.key) }
            state.deadLetters = state.deadLetters.filter { sinks.contains($0.key) }
        }
    }

    /// `contoso: ok 12s ago +3; fabrikam: FAILING 40s ago (...); outbox 0; sink archive FAILING;
    /// sink siem 2 dead letters; fabrikam 1 quarantined`.
    public var line: String {
        let now = clock.now()
        return state.withLock { state in
            var parts: [String] = []
            for tenant in state.tenantOrder {
                guard let (result, at) = state.tenants[tenant] else { continue }
                let age = "\((now - at).components.seconds)s ago"
                switch result {
                case .polling(let count, let window): parts.append("\(tenant): polling (\(count) alerts so far, window \(window))")
                case .succeeded(let count): parts.append("\(tenant): ok \(age) +\(count)")
                case .paused(let outbox): parts.append("\(tenant): PAUSED \(age) (outbox \(outbox) over max_outbox)")
                case .failed(let reason): parts.append("\(tenant): FAILING \(age) (\(reason.prefix(120)))")
                }
            }
            parts.append("outbox \(state.outbox)")
            for (sink, _) in state.failingSinks.sorted(by: { $0.key < $1.key }) { parts.append("sink \(sink) FAILING") }
            for (sink, count) in state.deadLetters.sorted(by: { $0.key < $1.key }) { parts.append("sink \(sink) \(count) dead letters") }
            for tenant in state.tenantOrder { if let count = state.quarantined[tenant] { parts.append("\(tenant) \(count) quarantined") } }
            return parts.joined(separator: "; ")
        }
    }
}
