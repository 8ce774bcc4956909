import DefenderAPI
import DefenderSimulator
import Foundation
import Logging
import Synchronization
import TestSupport
import Testing
import Timekeeping

/// A simulated tenant plus the client side wired to it: transport, token provider, alerts
/// client, on injected clocks; logs are captured to check that no secret leaks.
struct APIHarness: Sendable {
    static let tenant = "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35"
    static let client = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
    static let canary = "CANARY-client-secret-4b7f9e"
    static let start = Timestamp(parsing: "2025-03-14T10:00:00Z")!

    let simulator: SimulatedDefender
    let simulatorClock = SimulatorClock.manual(start: start)
    let clock = ManualClock()
    let records = LogRecords()

    init(configure: (inout SimulatorConfiguration) throws -> Void = { _ in }) throws {
        var configuration = SimulatorConfiguration()
        configuration.apps = [RegisteredApp(tenantID: Self.tenant, clientID: Self.client, secrets: [Self.canary])]
        try configure(&configuration)
        simulator = try SimulatedDefender(configuration: configuration, clock: simulatorClock)
    }

    /// The public client app of user context, and a user who may sign in with it.
    static let publicClient = "0a6e9f2c-51d4-4c7e-9b8a-3f2e1d0c9b8a"

    static func withPublicClient() throws -> APIHarness {
        try APIHarness { configuration in
            var app = RegisteredApp(tenantID: tenant, clientID: publicClient, displayName: "alertd-user-context")
            app.isPublicClient = true
            configuration.apps.append(app)
            configuration.users = [SimulatedUser(userPrincipalName: "analyst@contoso.com", displayName: "Ana Lyst")]
        }
    }

    /// The device code sign-in of the public client, its waits on the manual clock.
    func deviceCodeLogin(base: String, transport: any HTTPTransport, api: AlertsAPI = .mde) -> DeviceCodeLogin {
        DeviceCodeLogin(
            endpoints: endpoints(base, api: api), tenantID: Self.tenant, clientID: Self.publicClient,
            transport: transport, clock: clock.clock, logger: records.logger(label: "login"))
    }

    /// Signs the analyst in at once (approved as the prompt is shown): the tokens it brought.
    func signIn(base: String, transport: any HTTPTransport) async throws -> DeviceCodeLogin.Tokens {
        let simulator = self.simulator
        return try await deviceCodeLogin(base: base, transport: transport)
            .run { prompt in try? await simulator.decideDeviceCode(prompt.userCode, user: "analyst@contoso.com") }
    }

    func endpoints(_ base: String, api: AlertsAPI = .mde) -> DefenderEndpoints {
        DefenderEndpoints(api: api, cloud: .commercial, apiURL: base, loginURL: base)
    }

    func tokenProvider(
        base: String, transport: any HTTPTransport, credential: ClientCredential? = nil,
        version: DefenderAPI.TokenEndpointVersion = .v2, tenant: String = tenant, api: AlertsAPI = .mde
    ) -> TokenProvider {
        let clock = simulatorClock
        return TokenProvider(
            configuration: .init(
                tenantID: tenant, clientID: Self.client, credential: credential ?? .secret(Secret(Self.canary)),
                endpoints: endpoints(base, api: api), version: version),
            transport: transport, clock: self.clock.clock, wallClock: { clock.now().date }, random: { 0.5 },
            logger: records.logger(label: "token"))
    }

    func alertsClient(
        base: String, transport: any HTTPTransport, tokens: TokenProvider, settings: AlertsClient.Settings = .init(),
        budget: RateBudget? = nil, api: AlertsAPI = .mde
    ) -> AlertsClient {
        AlertsClient(
            endpoints: endpoints(base, api: api), settings: settings, tokens: tokens, transport: transport,
            budget: budget ?? RateBudget(perMinute: 100, perHour: 1500, clock: clock.clock),
            clock: clock.clock, random: { 0 }, logger: records.logger(label: "alerts"))
    }

    /// A live simulator and a real HTTP client for `body`; the client is always shut down.
    func live(
        tls: SimulatorTLS? = nil, caFile: String? = nil, proxy: ProxySettings = ProxySettings(server: nil),
        maximumBodySize: Int? = nil,
        _ body: @Sendable (_ base: String, _ transport: DefenderHTTPClient) async throws -> Void
    ) async throws {
        var settings = DefenderHTTPClient.Settings(caFile: caFile, proxy: proxy)
        if let maximumBodySize { settings.maximumBodySize = maximumBodySize }
        settings.connectTimeout = .seconds(2)  // a refused TLS handshake is retried until then
        try await withLiveSimulatorAndClient(simulator, tls: tls, settings: settings, body)
    }
}

/// A transport that counts requests and passes them on.
final class CountingTransport: HTTPTransport {
    let base: any HTTPTransport
    private let counter = Counter()

    init(_ base: any HTTPTransport) { self.base = base }

    func send(_ request: HTTPExchangeRequest, deadline: Duration) async throws(TransportError) -> HTTPExchangeResponse {
        counter.increment()
        return try await base.send(request, deadline: deadline)
    }

    var count: Int { counter.value }
}


final class Counter: Sendable {
    private let storage = Mutex(0)
    func increment() { storage.withLock { $0 += 1 } }
    var value: Int { storage.withLock { $0 } }
}

/// Counts requests sent; `waitForRequests(_:)` returns once that many were sent, or fails the
/// test after 30 s (a safety net: it never decides a pass).
final class WatchedTransport: HTTPTransport {
    private struct State {
        var sent = 0
        var waiters: [(count: Int, continuation: CheckedContinuation<Bool, Never>)] = []
    }

    let base: any HTTPTransport
    private let state = Mutex(State())

    init(_ base: any HTTPTransport) { self.base = base }

    func send(_ request: HTTPExchangeRequest, deadline: Duration) async throws(TransportError) -> HTTPExchangeResponse {
        let ready = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.sent += 1
            let sent = state.sent
            defer { state.waiters.removeAll { $0.count <= sent } }
            return state.waiters.filter { $0.count <= sent }.map(\.continuation)
        }
        for waiter in ready { waiter.resume(returning: true) }
        return try await base.send(request, deadline: deadline)
    }

    /// Whether `count` requests were sent (false after 30 s without).
    func waitForRequests(_ count: Int) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let now = self.state.withLock { state -> Bool in
                        if state.sent >= count { return true }
                        state.waiters.append((count, continuation))
                        return false
                    }
                    if now { continuation.resume(returning: true) }
                }
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(30))
                return false
            }
            let first = await group.next() ?? false
            if !first {
                // Release the waiter so the group can finish.
                let stuck = self.state.withLock { state in
                    defer { state.waiters = [] }; return state.waiters.map(\.continuation)
                }
                for waiter in stuck { waiter.resume(returning: false) }
            }
            group.cancelAll()
            return first
        }
    }
}

/// Reads a window completely, checking that batches come in time order.
func readAll(_ client: AlertsClient, from: Timestamp) async throws -> [Alert] {
    var alerts: [Alert] = []
    var previousLower: Timestamp?
    try await client.fetch(from: .inclusive(from), now: { APIHarness.start.date }) { batch in
        let lower: Timestamp =
            switch batch.lower {
            case .inclusive(let time): time
            case .exclusive(let time): time.adding(ticks: 1)
            }
        // Windows come in time order and hold only their own alerts.
        if let previousLower { #expect(lower >= previousLower) }
        for alert in batch.alerts {
            #expect(alert.lastUpdateTime >= lower)
            if let upper = batch.upper { #expect(alert.lastUpdateTime < upper) }
        }
        previousLower = lower
        alerts += batch.alerts
    }
    return alerts
}

/// An alerts client, with its own token provider, talking to a fake API (`transport`) on a
/// manual clock: for tests that count what reaches the API and when.
func fakeAPIClient(_ transport: any HTTPTransport, clock time: ManualClock, budget: RateBudget) -> AlertsClient {
    let records = LogRecords()
    let endpoints = DefenderEndpoints(cloud: .commercial, apiURL: "https://api.test", loginURL: "https://login.test")
    let tokens = TokenProvider(
        configuration: .init(
            tenantID: APIHarness.tenant, clientID: APIHarness.client, credential: .secret(Secret(APIHarness.canary)),
            endpoints: endpoints, version: .v2),
        transport: transport, clock: time.clock, logger: records.logger())
    return AlertsClient(
        endpoints: endpoints, settings: .init(pageSize: 10), tokens: tokens, transport: transport, budget: budget,
        clock: time.clock, logger: records.logger())
}
