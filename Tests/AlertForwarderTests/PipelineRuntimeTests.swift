import DefenderAPI
import DefenderSimulator
import Foundation
import Logging
import Synchronization
import Systemd
import TestSupport
import Testing
import Timekeeping

@testable import AlertForwarder

/// The running pipeline in process, its ticks, deadlines and health on a stepped clock, against
/// the simulator on loopback: polls, deadlines and the watchdog fire exactly when the test
/// moves time, and faults are injected by wrapping the pollers (issue 11, hole 10).
@Suite("Pipeline at run time, on a stepped clock")
struct PipelineRuntimeTests {
    let fixture = ConfigFixture()
    let records = LogRecords()
    let notifier = RecordingNotifier()
    let time = SteppedClock()

    /// The configuration: one tenant on the simulator at `base`, a file sink.
    func configuration(base: String, pollTimeout: String = "5s", tenant extra: String = "") throws -> Configuration {
        try fixture.load(
            """
            [service]
            poll_interval = "10s"
            poll_timeout = "\(pollTimeout)"
            state_directory = "state"

            \(ConfigFixture.tenant)
            api_url = "\(base)"
            login_url = "\(base)"
            \(extra)

            [[sink]]
            name = "archive"
            type = "file"
            path = "alerts.jsonl"
            """)
    }

    /// Runs a pipeline whose pollers go through `gate`, for `body`; stops it afterwards.
    func withPipeline(
        _ simulator: SimulatedDefender, gate: PollGate, pollTimeout: String = "5s",
        _ body: @Sendable (_ pipeline: Pipeline, _ base: String, _ health: HealthMonitor, _ status: StatusLine) async throws -> Void
    ) async throws {
        try await withLiveSimulatorAndClient(simulator) { base, transport in
            let configuration = try configuration(base: base, pollTimeout: pollTimeout)
            let health = HealthMonitor(clock: time.clock)
            let status = StatusLine(notifier: notifier)
            var parts = Pipeline.Parts.production
            parts.pollLeeway = .zero
            parts.poller = { GatedPoller(inner: $0, gate: gate) }
            let pipeline = Pipeline(
                configuration: configuration, store: try StateStore.embedded(directory: configuration.service.stateDirectory),
                transport: transport, health: health, statusLine: status, clock: time.clock, parts: parts,
                logger: records.logger())
            let running = Task { try await pipeline.run() }
            do {
                try await body(pipeline, base, health, status)
            } catch {
                gate.release()
                running.cancel()
                _ = await running.result
                throw error
            }
            gate.release()
            running.cancel()
            _ = await running.result
        }
    }

    @Test func aHungPollerStopsTheWatchdogAndIsNamed() async throws {
        // The poller hangs and ignores cancellation (a deadlock): once its allowance (poll
        // interval + poll_timeout + 10 s) has passed, the watchdog withholds its pings and
        // STATUS= names it.
        let gate = PollGate(.hangIgnoringCancellation)
        try await withPipeline(try fixtureSimulator(), gate: gate) { _, _, health, status in
            let watchdog = WatchdogService(
                settings: WatchdogSettings(timeout: .seconds(60)), monitor: health, notifier: notifier, status: status,
                clock: time.clock, logger: records.logger())
            #expect(await eventually { gate.counts.started == 1 })
            #expect(watchdog.check(), "healthy while the poll is within its allowance")
            #expect(notifier.watchdogPings == 1)
            time.advance(by: .seconds(25))
            #expect(watchdog.check(), "25 s is the allowance itself, not more")
            time.advance(by: .seconds(1))
            #expect(!watchdog.check())
            #expect(notifier.watchdogPings == 2, "no ping once stalled")
            #expect(status.current.contains("STALLED: poller:contoso"), "\(status.current)")
            #expect(records.at(.critical).contains { $0.message.contains("component stalled: poller:contoso") })
        }
    }

    @Test func aPollPastItsDeadlineIsCutOffAndReported() async throws {
        let gate = PollGate(.hangUntilCancelled)
        try await withPipeline(try fixtureSimulator(), gate: gate) { _, _, _, status in
            #expect(await eventually { gate.counts.started == 1 && time.pendingSleeps.contains(.seconds(5)) })
            #expect(records.at(.error).isEmpty)
            time.advance(by: .seconds(5))
            #expect(await eventually { gate.counts.cancelled == 1 })
            #expect(await eventually { records.at(.error).contains { $0.message.contains("poll did not finish within poll_timeout") } })
            time.advance(by: .seconds(2))  // STATUS= is refreshed every 2 s
            #expect(await eventually { status.current.contains("contoso: FAILING") && status.current.contains("poll_timeout 5s") })
            // The next tick polls again.
            time.advance(by: .seconds(3))
            #expect(await eventually { gate.counts.started == 2 })
        }
    }

    @Test func aBurstOfReloadsKeepsTheTokenTheBudgetAndARetryAfter() async throws {
        // The first poll gets a 429 with Retry-After: 30. Then 50 reloads, each a new generation
        // of the pipeline whose poller polls at once: they share the first one's token and rate
        // budget, so none asks Entra ID for a token again or calls the API before the 30 s
        // have passed (once, each reload built a new budget and token cache: 51 tokens, 48
        // calls inside a running Retry-After).
        let simulator = try fixtureSimulator()
        try await simulator.generateAlerts(count: 5)
        try await simulator.addFault(Fault(target: .alerts, kind: .rateLimit, retryAfter: 30, count: 1))
        let gate = PollGate(.pass)
        try await withPipeline(simulator, gate: gate, pollTimeout: "120s") { pipeline, base, _, _ in
            /// The generation's poll has started, and ended or waits for the Retry-After (a sleep
            /// of up to 30 s; the poll's deadline is one of 120 s).
            func settled(_ polls: Int) async -> Bool {
                await eventually {
                    let counts = gate.counts
                    return counts.started == polls
                        && (counts.finished == polls || time.pendingSleeps.contains { (.seconds(20) ... .seconds(30)).contains($0) })
                }
            }
            #expect(await settled(1))
            for reload in 1...50 {
                pipeline.apply(try configuration(base: base, pollTimeout: "120s", tenant: "page_size = \(100 + reload)"))
                #expect(await settled(reload + 1), "reload \(reload)")
            }
            let counters = await simulator.counterSnapshot
            #expect(counters.tokensIssued == 1)
            #expect(counters.total("alerts") == 1, "\(counters.requests)")
            #expect(counters.callsIgnoringRetryAfter == 0)
            // Once the Retry-After has passed, the poll of the generation in force goes on.
            time.advance(by: .seconds(31))
            #expect(await eventually { gate.counts.finished >= 1 })
            #expect(
                await eventually {
                    let lines = (try? String(contentsOfFile: fixture.directory.file("alerts.jsonl"), encoding: .utf8))?.split(separator: "\n") ?? []
                    return lines.count == 5
                }, "the 5 alerts delivered")
            #expect(await simulator.counterSnapshot.tokensIssued == 1)
        }
    }
}

/// Where the pollers of a test pipeline go through.
final class PollGate: Sendable {
    enum Mode {
        /// Polls run as they are.
        case pass
        /// Polls hang until the test releases them, whatever cancels them (a deadlock).
        case hangIgnoringCancellation
        /// Polls hang until cancelled (a request that never ends).
        case hangUntilCancelled
    }

    struct Counts {
        var started = 0
        var finished = 0
        var cancelled = 0
    }

    let mode: Mode
    private let state = Mutex<(counts: Counts, released: Bool, parked: [CheckedContinuation<Void, Never>])>((Counts(), false, []))

    init(_ mode: Mode) { self.mode = mode }

    var counts: Counts { state.withLock { $0.counts } }

    func count(_ update: (inout Counts) -> Void) { state.withLock { update(&$0.counts) } }

    /// Waits until ``release()``.
    func park() async {
        await withCheckedContinuation { continuation in
            let released = state.withLock { state in
                if !state.released { state.parked.append(continuation) }
                return state.released
            }
            if released { continuation.resume() }
        }
    }

    func release() {
        let parked = state.withLock { state in
            state.released = true
            defer { state.parked = [] }
            return state.parked
        }
        for continuation in parked { continuation.resume() }
    }
}

/// A tenant's poller seen through a ``PollGate``.
struct GatedPoller: TenantPolling {
    let inner: TenantPoller
    let gate: PollGate

    var tenant: TenantConfiguration { inner.tenant }
    var stream: RecordStream { inner.stream }

    func pollOnce() async -> TenantPoller.Outcome {
        gate.count { $0.started += 1 }
        switch gate.mode {
        case .pass:
            let outcome = await inner.pollOnce()
            gate.count { $0.finished += 1 }
            return outcome
        case .hangIgnoringCancellation:
            await gate.park()
            return .failed("released")
        case .hangUntilCancelled:
            await withTaskCancellationHandler {
                await gate.park()
            } onCancel: {
                gate.count { $0.cancelled += 1 }
                gate.release()
            }
            return .failed("cancelled")
        }
    }
}

@Suite("Token caches and rate budgets across reloads")
struct TenantConnectionsTests {
    let fixture = ConfigFixture()

    func tenants(_ text: String) throws -> [TenantConfiguration] {
        try fixture.load(text + "\n" + ConfigFixture.sink).tenants
    }

    @Test func theSameAppKeepsItsTokenCacheAndBudget() async throws {
        let transport = try DefenderHTTPClient(settings: .init())
        let connections = TenantClientCache(transport: transport, logger: LogRecords().logger())
        let first = try await connections.clients(for: tenants(ConfigFixture.tenant))[0].get()
        // Other filters, page size and limits: the same app in the same tenant.
        let second = try await connections.clients(
            for: tenants(ConfigFixture.tenant + "\npage_size = 50\nseverity = [\"High\"]\nrate_limit_per_minute = 40"))[0].get()
        #expect(first.tokens === second.tokens)
        #expect(first.budget === second.budget)
        #expect(await second.budget.perMinute == 40)
        // Another secret: a new token; the same app's budget.
        fixture.directory.write("other-secret", "another-value\n", mode: 0o600)
        let third = try await connections.clients(
            for: tenants(ConfigFixture.tenant.replacingOccurrences(of: "\"secret\"", with: "\"other-secret\"")))[0].get()
        #expect(third.tokens !== second.tokens)
        #expect(third.budget === second.budget)
        // Two entries for the same app and tenant share both, at the lower limits.
        let twice =
            ConfigFixture.tenant + "\nrate_limit_per_minute = 60\n"
            + ConfigFixture.tenant.replacingOccurrences(of: "\"contoso\"", with: "\"contoso-high\"")
            + "\nseverity = [\"High\"]\nrate_limit_per_minute = 30"
        let pair = try await connections.clients(for: tenants(twice)).map { try $0.get() }
        #expect(pair[0].tokens === pair[1].tokens && pair[0].budget === pair[1].budget)
        #expect(await pair[0].budget.perMinute == 30)
        // Another app: its own.
        let other = try await connections.clients(
            for: tenants(
                ConfigFixture.tenant.replacingOccurrences(of: "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c", with: "11111111-2222-3333-4444-555555555555")))[
                0
            ].get()
        #expect(other.tokens !== pair[0].tokens && other.budget !== pair[0].budget)
        await transport.shutdown()
    }
}
