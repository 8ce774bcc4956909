import DefenderAPI
import DefenderSimulator
import Foundation
import Synchronization
import TestSupport
import Testing
import Timekeeping

@Suite("HTTPS, custom CA and proxy")
struct TransportTests {
    @Test func httpsWithTheSimulatorsCA() async throws {
        let harness = try APIHarness()
        let tls = try SimulatorTLS.generate()
        let directory = TemporaryDirectory()
        let ca = directory.write("ca.pem", tls.caCertificatePEM, mode: 0o644)
        try await harness.live(tls: tls, caFile: ca) { base, transport in
            #expect(base.hasPrefix("https://"))
            let client = harness.alertsClient(base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport))
            let count = try await client.probe()
            #expect(count == 0)
        }
        // Without the CA the server is not trusted: TLS verification is always on.
        try await harness.live(tls: tls) { base, transport in
            let result = await capture { () async throws(TokenError) in try await harness.tokenProvider(base: base, transport: transport).token() }
            guard case .failure(let error) = result else { Issue.record("an untrusted server was accepted"); return }
            #expect(error.kind == .transient)
            #expect(error.description.lowercased().contains("certificate") || error.description.lowercased().contains("handshake"), "\(error)")
        }
    }

    @Test func aRealProxySeesTheConnect() async throws {
        let proxy = try TinyProxy()
        let harness = try APIHarness()
        let tls = try SimulatorTLS.generate()
        let directory = TemporaryDirectory()
        let ca = directory.write("ca.pem", tls.caCertificatePEM, mode: 0o644)
        let settings = ProxySettings.resolve(proxyURL: nil, environment: ["HTTPS_PROXY": "http://127.0.0.1:\(proxy.port)"])
        try await harness.live(tls: tls, caFile: ca, proxy: settings) { base, transport in
            let client = harness.alertsClient(base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport))
            let count = try await client.probe()
            #expect(count == 0)
            let port = try #require(URLComponents(string: base)?.port)
            #expect(proxy.log.contains("CONNECT 127.0.0.1:\(port)"), "\(proxy.log)")
        }
    }

    @Test func noProxyHostsGoDirect() async throws {
        let proxy = try TinyProxy()
        let harness = try APIHarness()
        let settings = ProxySettings.resolve(proxyURL: "http://127.0.0.1:\(proxy.port)", environment: ["NO_PROXY": "localhost,127.0.0.1"])
        try await harness.live(proxy: settings) { base, transport in
            let client = harness.alertsClient(base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport))
            let count = try await client.probe()
            #expect(count == 0)
            #expect(!proxy.log.contains("CONNECT 127.0.0.1"))
            #expect(!proxy.log.contains("GET http"))
        }
    }

    @Test func proxySettings() {
        let settings = ProxySettings.resolve(
            proxyURL: nil,
            environment: [
                "https_proxy": "http://user:p%40ss@proxy.corp:8080", "no_proxy": ".internal, example.com,10.1.2.3",
            ])
        #expect(settings.server?.host == "proxy.corp")
        #expect(settings.server?.port == 8080)
        #expect(settings.server?.username == "user")
        #expect(settings.server?.password?.withValue { $0 } == "p@ss")
        #expect("\(settings.server!)" == "proxy.corp:8080")
        #expect(settings.usesProxy(for: "api.security.microsoft.com"))
        #expect(!settings.usesProxy(for: "host.internal"))
        #expect(!settings.usesProxy(for: "api.example.com"))
        #expect(!settings.usesProxy(for: "10.1.2.3"))
        #expect(!ProxySettings.resolve(proxyURL: "http://p:3128", environment: ["NO_PROXY": "*"]).usesProxy(for: "x"))
        #expect(ProxySettings.parse("socks5://p:1080") == nil)
        #expect(ProxySettings.resolve(proxyURL: "http://explicit:1", environment: ["HTTPS_PROXY": "http://env:2"]).server?.host == "explicit")
    }
}

@Suite("Endpoints, Retry-After, back-off, rate budget")
struct DefenderAPIUnitTests {
    @Test func endpointsPerCloud() {
        let commercial = DefenderEndpoints(cloud: .commercial)
        #expect(commercial.loginBase == "https://login.microsoftonline.com")
        #expect(commercial.apiBase == "https://api.security.microsoft.com")
        #expect(commercial.resource == "https://api.securitycenter.microsoft.com")
        #expect(commercial.tokenURL(tenant: "t", version: .v2) == "https://login.microsoftonline.com/t/oauth2/v2.0/token")
        #expect(commercial.tokenURL(tenant: "t", version: .v1) == "https://login.microsoftonline.com/t/oauth2/token")
        #expect(DefenderEndpoints(cloud: .commercial, region: .eu).apiBase == "https://eu.api.security.microsoft.com")
        #expect(DefenderEndpoints(cloud: .gcc).apiBase == "https://api-gcc.securitycenter.microsoft.us")
        #expect(DefenderEndpoints(cloud: .gcc).loginBase == "https://login.microsoftonline.com")
        #expect(DefenderEndpoints(cloud: .gccHigh).loginBase == "https://login.microsoftonline.us")
        #expect(DefenderEndpoints(cloud: .dod).apiBase == "https://api-gov.securitycenter.microsoft.us")
        let overridden = DefenderEndpoints(cloud: .gccHigh, apiURL: "http://127.0.0.1:9/", loginURL: "http://127.0.0.1:8")
        #expect(overridden.alertsURL == "http://127.0.0.1:9/api/alerts")
        #expect(overridden.loginBase == "http://127.0.0.1:8")
    }

    @Test func retryAfterForms() {
        #expect(RetryAfter.parse("30", now: 0)?.wait == .seconds(30))
        #expect(RetryAfter.parse("30", now: 0)?.clamped == false)
        #expect(RetryAfter.parse("Thu, 01 Jan 1970 00:01:40 GMT", now: 40)?.wait == .seconds(60))
        #expect(RetryAfter.parse("99999", now: 0)?.wait == .seconds(3600))
        #expect(RetryAfter.parse("99999", now: 0)?.clamped == true)
        #expect(RetryAfter.parse("Thu, 01 Jan 1970 00:00:10 GMT", now: 40)?.wait == .zero)
        #expect(RetryAfter.parse("-5", now: 0)?.wait == .zero)
        #expect(RetryAfter.parse("soon", now: 0) == nil)
        // Found by fuzzing (fuzz/corpus/time-text/crash-*): numbers beyond a C int trapped.
        #expect(RetryAfter.parse("Sun, 66666666606 Nov 1994 GMT:4:3:7 GMT", now: 0) == nil)
        #expect(RetryAfter.parse("Sun, 06 Nov 99999999999 08:49:37 GMT", now: 0) == nil)
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 99999999999:49:37 GMT", now: 0) == nil)
        #expect(RetryAfter.parse(nil, now: 0) == nil)
    }

    @Test func fullJitterStaysUnderACap() {
        let backoff = Backoff(base: .seconds(1), cap: .seconds(60))
        #expect(backoff.ceiling(attempt: 0) == .seconds(1))
        #expect(backoff.ceiling(attempt: 3) == .seconds(8))
        #expect(backoff.ceiling(attempt: 40) == .seconds(60))
        #expect(backoff.delay(attempt: 3, unit: 0.5) == .seconds(4))
        #expect(backoff.delay(attempt: 3, unit: 0) == .zero)
    }

    @Test func rateBudgetWaitsForRoom() async throws {
        let time = ManualClock()
        let budget = RateBudget(perMinute: 3, perHour: 5, clock: time.clock)
        for _ in 0..<3 { await budget.answered(try await budget.acquire()) }
        #expect(await budget.waitTime() == .milliseconds(60_500))  // the window and a margin
        await budget.answered(try await budget.acquire())  // the virtual clock moves through the wait
        #expect(time.clock.now() == .milliseconds(60_500))
        await budget.answered(try await budget.acquire())
        #expect(await budget.waitTime() == .milliseconds(3540_000))  // 5 an hour
        #expect(await budget.nextWait().limit == .perHour(5))
        budget.pause(for: .seconds(7200))
        #expect(await budget.waitTime() == .seconds(7200))
        #expect(await budget.nextWait().limit == .retryAfter)
    }

    @Test func lowPriorityCallsTakeHalfOfEachWindowAndNeverGoBeforeAWaitingNormalCall() async throws {
        let time = ManualClock()
        let budget = RateBudget(perMinute: 4, perHour: 100, clock: time.clock)
        // A sweep may use half of the minute...
        for _ in 0..<2 { await budget.answered(try await budget.acquire(priority: .low)) }
        #expect(time.clock.now() == .zero)
        #expect(await budget.waitTime(priority: .low) == .milliseconds(60_500))
        // ... and the polls the rest, at once.
        #expect(await budget.waitTime() == .zero)
        for _ in 0..<2 { await budget.answered(try await budget.acquire()) }
        #expect(time.clock.now() == .zero)
        // A low-priority call that waits moves on only once room is there for it.
        let call = try await budget.acquire(priority: .low)
        #expect(time.clock.now() >= .milliseconds(60_500))
        #expect(call.waitedForLimits >= .milliseconds(60_500))
        #expect(call.waitedForRetryAfter == .zero)
    }

    @Test func aCallSaysHowLongItWaitedAndForWhat() async throws {
        let time = ManualClock()
        let budget = RateBudget(perMinute: 1, perHour: 100, clock: time.clock)
        budget.pause(for: .seconds(5))
        let first = try await budget.acquire()
        #expect(first.waitedForRetryAfter == .seconds(5) && first.waitedForLimits == .zero)
        await budget.answered(first)
        let second = try await budget.acquire()
        #expect(second.waitedForLimits == .milliseconds(60_500) && second.waitedForRetryAfter == .zero)
    }

    @Test func aCallCountsUntilItsAnswerCame() async throws {
        let time = ManualClock()
        let budget = RateBudget(perMinute: 1, perHour: 100, clock: time.clock)
        let first = try await budget.acquire()
        time.advance(by: .seconds(100))
        // The call is still on its way: the API may count it at any moment from now on.
        #expect(await budget.waitTime() == .milliseconds(60_500))
        time.advance(by: .seconds(5))
        await budget.answered(first)
        #expect(await budget.waitTime() == .milliseconds(60_500))
        time.advance(by: .seconds(61))
        #expect(await budget.waitTime() == .zero)
        // New limits keep the calls counted.
        await budget.answered(try await budget.acquire())
        #expect(await budget.waitTime() == .milliseconds(60_500))
        await budget.setLimits(perMinute: 2, perHour: 100)
        #expect(await budget.waitTime() == .zero)
        await budget.answered(try await budget.acquire())
        await budget.setLimits(perMinute: 1, perHour: 100)
        #expect(await budget.waitTime() == .milliseconds(60_500))
    }

    @Test func noMinuteOfTheAPIsClockSeesMoreCallsThanTheLimit() async throws {
        // The API counts a call when it arrives. Calls whose way to the API takes from 10 ms to
        // 5 s (the slow one every 37th), 400 of them as fast as the budget lets them go: in no
        // 60-second window of arrivals may there be more than 100. (Counted from when calls were
        // sent, a window once held 101.)
        let time = ManualClock()
        let api = LatencyAPI(clock: time) { number in number % 37 == 0 ? .seconds(5) : .milliseconds(10) }
        let client = fakeAPIClient(api, clock: time, budget: RateBudget(perMinute: 100, perHour: 100_000, clock: time.clock))
        for _ in 0..<400 { _ = try await client.probe() }
        let arrivals = api.arrivals
        #expect(arrivals.count == 400)
        let busiest = arrivals.indices.map { start in arrivals[start...].prefix { $0 < arrivals[start] + .seconds(60) }.count }.max() ?? 0
        #expect(busiest <= 100, "\(busiest) calls arrived within one minute")
        #expect(busiest >= 95, "the budget is not needlessly slow")
    }
}

/// The API on a virtual clock: each alerts request takes `latency(n)` to arrive (the clock moves
/// on), is counted on arrival, and is answered at once with an empty page; tokens are issued
/// without delay.
final class LatencyAPI: HTTPTransport {
    private let clock: ManualClock
    private let latency: @Sendable (Int) -> Duration
    private let state = Mutex<[Duration]>([])

    init(clock: ManualClock, latency: @escaping @Sendable (Int) -> Duration) {
        self.clock = clock
        self.latency = latency
    }

    var arrivals: [Duration] { state.withLock { $0 } }

    func send(_ request: HTTPExchangeRequest, deadline: Duration) async throws(TransportError) -> HTTPExchangeResponse {
        if request.url.contains("/oauth2/") {
            return HTTPExchangeResponse(
                status: 200, headers: [("Content-Type", "application/json")],
                body: Data(#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"a.b.c"}"#.utf8))
        }
        let number = state.withLock { $0.count }
        clock.advance(by: latency(number))
        state.withLock { $0.append(clock.clock.now()) }
        return HTTPExchangeResponse(status: 200, headers: [("Content-Type", "application/json")], body: Data(#"{"value":[]}"#.utf8))
    }
}
