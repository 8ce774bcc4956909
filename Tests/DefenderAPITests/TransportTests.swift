import DefenderAPI
import DefenderSimulator
import Foundation
import Testing
import Timekeeping
import TestSupport

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
        let settings = ProxySettings.resolve(proxyURL: nil, environment: [
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
        for _ in 0..<3 { try await budget.acquire() }
        #expect(await budget.waitTime() == .seconds(60))
        try await budget.acquire()  // the virtual clock moves through the wait
        #expect(time.clock.now() == .seconds(60))
        try await budget.acquire()
        #expect(await budget.waitTime() == .seconds(3540))  // 5 an hour
        await budget.pause(for: .seconds(7200))
        #expect(await budget.waitTime() == .seconds(7200))
    }
}
