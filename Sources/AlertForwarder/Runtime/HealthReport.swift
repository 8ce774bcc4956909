import DefenderAPI
import OrderedJSON
import Systemd
import Timekeeping

/// What `/healthz` answers: healthy when no component is stalled (the rule that gates the
/// watchdog) and no tenant's polls and no sink's deliveries have kept failing for longer than
/// `unhealthy_after`. A failing sink does not stop the watchdog (restarting the daemon would
/// not bring a SIEM back), but it does make the daemon unhealthy to whoever watches it.
public struct HealthReport: Sendable, Equatable {
    public var stalls: [HealthMonitor.Stall]
    public var failures: [PipelineStatus.Failure]

    public init(stalls: [HealthMonitor.Stall], failures: [PipelineStatus.Failure]) {
        self.stalls = stalls
        self.failures = failures
    }

    public var isHealthy: Bool { stalls.isEmpty && failures.isEmpty }

    /// `{"status":"ok"}`, or `{"status":"unhealthy","stalled":[...],"failing":[...]}` naming
    /// each part, how long, and why.
    public var json: String {
        guard !isHealthy else { return JSONValue.object([("status", .string("ok"))]).serialized }
        let stalled = stalls.map { stall in
            JSONValue.object([
                ("component", .string(stall.component)), ("silent_seconds", .int(Int(stall.silentFor.components.seconds))),
                ("allowance_seconds", .int(Int(stall.allowance.components.seconds))),
            ])
        }
        let failing = failures.map { failure in
            JSONValue.object([
                ("component", .string(failure.component)), ("failing_seconds", .int(Int(failure.failingFor.components.seconds))),
                ("error", .string(SecretRedaction.shown(failure.reason, limit: 500))),
            ])
        }
        return JSONValue.object([("status", .string("unhealthy")), ("stalled", .array(stalled)), ("failing", .array(failing))]).serialized
    }
}
