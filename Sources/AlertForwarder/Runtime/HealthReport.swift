import DefenderAPI
import OrderedJSON
import Systemd
import Timekeeping

/// What `/healthz` and its two probes answer.
///
/// `/healthz`: healthy when no component is stalled (the rule that gates the watchdog) and no
/// tenant's polls and no sink's deliveries have kept failing for longer than
/// `unhealthy_after`. A failing sink does not stop the watchdog (restarting the daemon would
/// not bring a SIEM back), but it does make the daemon unhealthy to whoever watches it.
///
/// `/healthz/live` (a container's liveness probe): alive unless a component is stalled, the
/// watchdog's rule: what a restart mends. `/healthz/ready` (its readiness probe): ready when
/// the state can be used (PostgreSQL reached, its schema in place; the embedded state always
/// is once open) and nothing is stalled.
public struct HealthReport: Sendable, Equatable {
    public var stalls: [HealthMonitor.Stall]
    public var failures: [PipelineStatus.Failure]
    /// Nil while the state can be used; else why not (PostgreSQL not reached yet, an outage).
    public var stateUnavailable: String?

    public init(stalls: [HealthMonitor.Stall], failures: [PipelineStatus.Failure], stateUnavailable: String? = nil) {
        self.stalls = stalls
        self.failures = failures
        self.stateUnavailable = stateUnavailable
    }

    /// The paths served, each a view of the same report.
    public enum Probe: String, Sendable, CaseIterable {
        case health = "/healthz"
        case live = "/healthz/live"
        case ready = "/healthz/ready"
    }

    public var isHealthy: Bool { stalls.isEmpty && failures.isEmpty }

    /// Whether `probe` answers 200.
    public func passes(_ probe: Probe) -> Bool {
        switch probe {
        case .health: isHealthy
        case .live: stalls.isEmpty
        case .ready: stalls.isEmpty && stateUnavailable == nil
        }
    }

    /// `{"status":"ok"}`, or `{"status":"unhealthy","stalled":[...],"failing":[...]}` naming
    /// each part, how long, and why.
    public var json: String { json(for: .health) }

    /// The body of `probe`'s answer: `{"status":"ok"}` when it passes, else the parts that fail
    /// it (`stalled`, `failing`, `state`).
    public func json(for probe: Probe) -> String {
        guard !passes(probe) else { return JSONValue.object([("status", .string("ok"))]).serialized }
        let stalled = JSONValue.array(
            stalls.map { stall in
                JSONValue.object([
                    ("component", .string(stall.component)), ("silent_seconds", .int(Int(stall.silentFor.components.seconds))),
                    ("allowance_seconds", .int(Int(stall.allowance.components.seconds))),
                ])
            })
        switch probe {
        case .health:
            let failing = failures.map { failure in
                JSONValue.object([
                    ("component", .string(failure.component)), ("failing_seconds", .int(Int(failure.failingFor.components.seconds))),
                    ("error", .string(SecretRedaction.shown(failure.reason, limit: 500))),
                ])
            }
            return JSONValue.object([("status", .string("unhealthy")), ("stalled", stalled), ("failing", .array(failing))]).serialized
        case .live:
            return JSONValue.object([("status", .string("stalled")), ("stalled", stalled)]).serialized
        case .ready:
            var members: [(String, JSONValue)] = [("status", .string("not ready")), ("stalled", stalled)]
            if let stateUnavailable { members.append(("state", .string(SecretRedaction.shown(stateUnavailable, limit: 500)))) }
            return JSONValue.object(members).serialized
        }
    }
}
