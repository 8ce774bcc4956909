import DefenderAPI
import DefenderSimulator
import Foundation
import OrderedJSON
import TestSupport
import Testing

@Suite("Token provider against the simulator")
struct TokenProviderTests {
    @Test func oneHundredConcurrentCallersMakeOneRequest() async throws {
        let harness = try APIHarness()
        try await harness.live { base, transport in
            let provider = harness.tokenProvider(base: base, transport: transport)
            let tokens = try await withThrowingTaskGroup(of: AccessToken.self) { group in
                for _ in 0..<100 { group.addTask { try await provider.token() } }
                var all: [AccessToken] = []
                for try await token in group { all.append(token) }
                return all
            }
            #expect(tokens.count == 100)
            #expect(Set(tokens.map { $0.value.withValue { $0 } }).count == 1)
            #expect(await provider.requestCount == 1)
            #expect(await harness.simulator.counterSnapshot.tokensIssued == 1)
        }
    }

    @Test func renewsBeforeEightyPercentOfTheLifetime() async throws {
        let harness = try APIHarness { $0.tokenLifetime = 1000 }
        try await harness.live { base, transport in
            let provider = harness.tokenProvider(base: base, transport: transport)
            let first = try await provider.token()
            #expect(first.lifetime == .seconds(1000))
            harness.clock.advance(by: .seconds(740))
            #expect(try await provider.token() == first)
            harness.clock.advance(by: .seconds(20))  // 760 s: past 75 %
            let second = try await provider.token()
            #expect(second != first)
            #expect(await provider.requestCount == 2)
        }
    }

    @Test func keepsTheValidTokenWhenRenewalFails() async throws {
        let harness = try APIHarness { $0.tokenLifetime = 1000 }
        try await harness.live { base, transport in
            let provider = harness.tokenProvider(base: base, transport: transport)
            let first = try await provider.token()
            try await harness.simulator.addFault(Fault(target: .token, kind: .status, status: 503))
            harness.clock.advance(by: .seconds(800))
            #expect(try await provider.token() == first)
            #expect(harness.records.at(.warning).contains { $0.message.contains("renewing the access token failed") })
            harness.clock.advance(by: .seconds(190))  // too close to expiry to keep using it
            await #expect(throws: TokenError.self) { try await provider.token() }
        }
    }

    @Test func v1EndpointWorksToo() async throws {
        let harness = try APIHarness()
        try await harness.live { base, transport in
            let token = try await harness.tokenProvider(base: base, transport: transport, version: .v1).token()
            #expect(token.roles == ["Alert.Read.All"])
            #expect(token.audience == "https://api.securitycenter.microsoft.com")
            #expect(await harness.simulator.counterSnapshot.count("token_v1", status: 200) == 1)
        }
    }

    struct Failure: Sendable, CustomTestStringConvertible {
        var name: String
        var secret: String = APIHarness.canary
        var tenant: String = APIHarness.tenant
        var fault: Fault?
        var kind: TokenError.Kind
        var code: Int?
        var hint: String?
        var testDescription: String { name }
    }

    static let failures: [Failure] = [
        Failure(name: "wrong secret", secret: "wrong", kind: .permanent, code: 7000215, hint: "ID (a GUID)"),
        Failure(name: "unknown tenant", tenant: "00000000-1111-2222-3333-444444444444", kind: .permanent, code: 90002, hint: "cloud"),
        Failure(name: "outage", fault: Fault(target: .token, kind: .status, status: 503), kind: .transient),
        Failure(name: "throttled", fault: Fault(target: .token, kind: .rateLimit, retryAfter: 5), kind: .transient),
        Failure(name: "captive portal", fault: Fault(target: .token, kind: .wrongContentType), kind: .transient, hint: "proxy"),
    ]

    @Test(arguments: failures)
    func failuresAreClassifiedAndBackedOff(_ failure: Failure) async throws {
        let harness = try APIHarness { configuration in
            if let fault = failure.fault { configuration.faults = [fault] }
        }
        try await harness.live { base, client in
            let transport = CountingTransport(client)
            let provider = TokenProvider(
                configuration: .init(
                    tenantID: failure.tenant, clientID: APIHarness.client, credential: .secret(Secret(failure.secret)),
                    endpoints: harness.endpoints(base)),
                transport: transport, clock: harness.clock.clock, random: { 1 }, logger: harness.records.logger())
            guard case .failure(let error) = await capture({ () async throws(TokenError) in try await provider.token() }) else {
                Issue.record("expected a failure")
                return
            }
            #expect(error.kind == failure.kind)
            if let code = failure.code { #expect(error.code == code) }
            if let hint = failure.hint { #expect(error.description.contains(hint), "\(error)") }
            #expect(!error.description.contains(APIHarness.canary))

            // No tight loop: calls during the back-off do not reach the network.
            for _ in 0..<50 { _ = try? await provider.token() }
            #expect(transport.count == 1)
            harness.clock.advance(by: .seconds(failure.kind == .permanent ? 31 : 6))
            _ = try? await provider.token()
            #expect(transport.count == 2)
        }
        #expect(!harness.records.fullText.contains(APIHarness.canary))
    }

    @Test(arguments: [CertificateCredential.Algorithm.ps256, .rs256])
    func certificateAssertionsAreAccepted(algorithm: CertificateCredential.Algorithm) async throws {
        let pair = try TestCertificate()
        let harness = try APIHarness { configuration in
            configuration.apps = [
                RegisteredApp(
                    tenantID: APIHarness.tenant, clientID: APIHarness.client,
                    certificates: [try RegisteredCertificate(pem: pair.pem)])
            ]
        }
        let credential = try CertificateCredential(
            certificatePEM: pair.pem, privateKeyPEM: Secret(pair.keyPEM), algorithm: algorithm,
            now: APIHarness.start.date)
        try await harness.live { base, transport in
            let provider = harness.tokenProvider(base: base, transport: transport, credential: .certificate(credential))
            let token = try await provider.token()
            #expect(token.canReadAlerts(of: .mde))
            // A second request signs a new assertion (fresh jti).
            harness.clock.advance(by: .seconds(3000))
            _ = try await provider.token()
            #expect(await harness.simulator.counterSnapshot.tokensIssued == 2)
        }
        #expect(!harness.records.fullText.contains("PRIVATE KEY"))
    }

    /// A clock two hours off makes Entra ID refuse the assertion as outside its valid time
    /// range (AADSTS700024); the fix names the clock, not the certificate (issue 11, hole 2).
    @Test func aClockHoursOffIsNamedAsTheProblem() async throws {
        let pair = try TestCertificate()
        let harness = try APIHarness { configuration in
            configuration.apps = [
                RegisteredApp(
                    tenantID: APIHarness.tenant, clientID: APIHarness.client,
                    certificates: [try RegisteredCertificate(pem: pair.pem)])
            ]
        }
        let credential = try CertificateCredential(
            certificatePEM: pair.pem, privateKeyPEM: Secret(pair.keyPEM), algorithm: .ps256,
            now: APIHarness.start.date)
        try await harness.live { base, transport in
            let serverClock = harness.simulatorClock
            let skewed = TokenProvider(
                configuration: .init(
                    tenantID: APIHarness.tenant, clientID: APIHarness.client, credential: .certificate(credential),
                    endpoints: harness.endpoints(base), version: .v2),
                transport: transport, clock: harness.clock.clock, wallClock: { serverClock.now().date.addingTimeInterval(-7200) },
                random: { 0.5 }, logger: harness.records.logger(label: "token"))
            await #expect {
                try await skewed.token()
            } throws: { error in
                let text = "\(error)"
                return text.contains("700024") && text.contains("clock") && !text.contains("upload the certificate")
            }
        }
    }
}
