import DefenderSimulator
import Foundation
import OrderedJSON
import TestSupport
import Testing
import _CryptoExtras

@Suite("Client assertions (certificate credentials)")
struct ClientAssertionTests {
    let certificate: TestCertificate
    let harness: SimulatorHarness
    let endpoint = "\(SimulatorHarness.base)/\(SimulatorHarness.tenant)/oauth2/v2.0/token"
    var now: Int64 { SimulatorHarness.start.ticks / 10_000_000 }

    init() throws {
        let certificate = try TestCertificate()
        self.certificate = certificate
        harness = try SimulatorHarness { configuration in
            configuration.apps = [
                RegisteredApp(
                    tenantID: SimulatorHarness.tenant, clientID: SimulatorHarness.client,
                    certificates: [try RegisteredCertificate(pem: certificate.pem)])
            ]
        }
    }

    func request(_ assertion: String, type: String = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") async -> SimulatorResponse {
        await harness.token(
            .v2,
            fields: [
                "grant_type": "client_credentials", "client_id": SimulatorHarness.client, "client_assertion_type": type,
                "client_assertion": assertion, "scope": "https://api.securitycenter.microsoft.com/.default",
            ])
    }

    func code(_ response: SimulatorResponse) throws -> Int? {
        guard case .array(let codes)? = try JSONValue(parsing: response.body)["error_codes"], case .number(let text)? = codes.first else {
            return nil
        }
        return Int(text)
    }

    @Test(arguments: [TestCertificate.Algorithm.ps256, .rs256])
    func validAssertionsAreAccepted(algorithm: TestCertificate.Algorithm) async throws {
        let response = await request(try certificate.assertion(algorithm, audience: endpoint, clientID: SimulatorHarness.client, issuedAt: now))
        #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
    }

    @Test func olderAudienceFormsAreAccepted() async throws {
        for audience in [
            "\(SimulatorHarness.base)/\(SimulatorHarness.tenant)/oauth2/token", "\(SimulatorHarness.base)/contoso.onmicrosoft.com/oauth2/v2.0/token",
        ] {
            let response = await request(try certificate.assertion(.rs256, audience: audience, clientID: SimulatorHarness.client, issuedAt: now))
            #expect(response.status == 200, "\(audience)")
        }
    }

    /// How Entra ID answers a reused `jti` is not documented: the simulator no longer invents a
    /// refusal (it sent AADSTS7000274, a certificate error in Microsoft's libraries); it accepts
    /// the assertion and counts it.
    @Test func aReusedAssertionIsCountedNotRefusedWithAnInventedCode() async throws {
        let assertion = try certificate.assertion(.ps256, audience: endpoint, clientID: SimulatorHarness.client, issuedAt: now)
        #expect(await request(assertion).status == 200)
        #expect(await harness.simulator.counterSnapshot.clientAssertionsReused == 0)
        #expect(await request(assertion).status == 200)
        #expect(await harness.simulator.counterSnapshot.clientAssertionsReused == 1)
    }

    @Test func badAssertionsAreRejected() async throws {
        let other = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let cases: [(String, String, Int)] = [
            (
                "wrong audience",
                try certificate.assertion(
                    .ps256, audience: "https://login.microsoftonline.com/\(SimulatorHarness.tenant)/oauth2/v2.0/token",
                    clientID: SimulatorHarness.client, issuedAt: now), 700023
            ),
            ("expired", try certificate.assertion(.ps256, audience: endpoint, clientID: SimulatorHarness.client, issuedAt: now - 3600), 700024),
            ("not yet valid", try certificate.assertion(.ps256, audience: endpoint, clientID: SimulatorHarness.client, issuedAt: now + 3600), 700024),
            (
                "signed by another key",
                try certificate.assertion(.ps256, audience: endpoint, clientID: SimulatorHarness.client, issuedAt: now, signer: other), 700027
            ),
            (
                "subject is not the issuer",
                try certificate.assertion(
                    .rs256, audience: endpoint, clientID: SimulatorHarness.client, issuedAt: now, claims: [("iss", .string("someone-else"))]), 50048
            ),
            (
                "issuer and subject are not the client",
                try certificate.assertion(
                    .rs256, audience: endpoint, clientID: SimulatorHarness.client, issuedAt: now,
                    claims: [("iss", .string("someone-else")), ("sub", .string("someone-else"))]), 50027
            ),
            (
                "no jti",
                try certificate.assertion(.rs256, audience: endpoint, clientID: SimulatorHarness.client, issuedAt: now, claims: [("jti", .null)]),
                50027
            ),
            (
                "fractional exp",
                try certificate.assertion(
                    .rs256, audience: endpoint, clientID: SimulatorHarness.client, issuedAt: now, claims: [("exp", .number("\(now + 600).5"))]), 50027
            ),
            ("not a JWT", "not.a.jwt", 50027),
        ]
        for (name, assertion, expected) in cases {
            let response = await request(assertion)
            #expect(response.status == 401, "\(name)")
            #expect(try code(response) == expected, "\(name): \(String(decoding: response.body, as: UTF8.self))")
            #expect(try JSONValue(parsing: response.body)["error"] == .string("invalid_client"), "\(name)")
        }
    }

    @Test func unregisteredCertificateIsNamedInTheError() async throws {
        let stranger = try TestCertificate()
        let response = await request(try stranger.assertion(.rs256, audience: endpoint, clientID: SimulatorHarness.client, issuedAt: now))
        #expect(response.status == 401)
        #expect(try code(response) == 700027)
        #expect(String(decoding: response.body, as: UTF8.self).contains("The key was not found"))
    }

    @Test func wrongAssertionTypeIsABadRequest() async throws {
        let response = await request(
            try certificate.assertion(.ps256, audience: endpoint, clientID: SimulatorHarness.client, issuedAt: now), type: "jwt")
        #expect(response.status == 400)
    }

    @Test func nonRSACertificatesCannotBeRegistered() throws {
        let tls = try SimulatorTLS.generate()  // its CA has a P-256 key
        #expect(throws: SimulatorSetupError.self) { try RegisteredCertificate(pem: tls.caCertificatePEM) }
    }
}
