import DefenderSimulator
import Foundation
import Testing

@testable import DefenderAPI

@Suite("Secret never shows its value")
struct SecretTests {
    let canary = "CANARY-7f3a9c-secret-value"

    @Test func descriptionsAreRedacted() {
        let secret = Secret(canary)
        #expect("\(secret)" == "<redacted>")
        #expect(String(describing: secret) == "<redacted>")
        #expect(String(reflecting: secret) == "<redacted>")
        var dumped = ""
        dump(secret, to: &dumped)
        #expect(!dumped.contains(canary))
        #expect(Mirror(reflecting: secret).children.isEmpty)
    }

    @Test func redactedInsideContainers() {
        struct Holder { var name = "x"; var secret: Secret }
        let holder = Holder(secret: Secret(canary))
        var dumped = ""
        dump(holder, to: &dumped)
        #expect(!dumped.contains(canary))
        #expect(!String(describing: holder).contains(canary))
        #expect(!String(describing: [holder]).contains(canary))
        #expect(!String(describing: Optional(Secret(canary))).contains(canary))
    }

    @Test func valueIsReachableDeliberately() {
        #expect(Secret(canary).withValue { $0 } == canary)
        #expect(Secret("").isEmpty)
    }
}

/// Text from outside is masked before it is logged: a token endpoint, an API or a proxy that
/// echoes the request must not put the daemon's secrets into its log (issue 11, hole 18; once,
/// an echoing endpoint put the client secret into the log 8 times).
@Suite("Secrets echoed by a server")
struct EchoedSecretTests {
    @Test(arguments: ["CANARY-client-secret-4b7f9e", "p@ss word+&=/\"\\%ü-canary"])
    func aTokenEndpointThatEchoesTheRequestLeaksNothing(secret: String) async throws {
        let harness = try APIHarness { configuration in
            configuration.apps[0].secrets = [secret]
            configuration.faults = [Fault(target: .token, kind: .echo)]
        }
        try await harness.live { base, transport in
            let tokens = TokenProvider(
                configuration: .init(
                    tenantID: APIHarness.tenant, clientID: APIHarness.client, credential: .secret(Secret(secret)),
                    endpoints: harness.endpoints(base)),
                transport: transport, clock: harness.clock.clock, logger: harness.records.logger(label: "token"))
            let error = try await #require(throws: TokenError.self) { try await tokens.token() }
            #expect(error.message.contains("client_secret=<redacted>"), "\(error.message)")
            #expect(error.message.contains("client_id=\(APIHarness.client)"), "the rest of the echo is kept")
            for form in [secret, PercentEncoding.encode(secret), PercentEncoding.encode(secret).replacingOccurrences(of: "%20", with: "+")] {
                #expect(!error.description.contains(form))
                #expect(!harness.records.fullText.contains(form))
            }
        }
    }

    @Test func anAPIThatEchoesTheAuthorizationHeaderLeaksNoToken() async throws {
        let harness = try APIHarness { $0.faults = [Fault(target: .alerts, kind: .echo)] }
        try await harness.live { base, transport in
            let tokens = harness.tokenProvider(base: base, transport: transport)
            let client = harness.alertsClient(base: base, transport: transport, tokens: tokens)
            let token = try await tokens.token().value.withValue { $0 }
            let error = try await #require(throws: DefenderAPIError.self) { _ = try await client.probe() }
            #expect(!"\(error)".contains(token))
            #expect("\(error)".contains("Authorization: Bearer <redacted>"), "\(error)")
        }
    }

    @Test func registeredSecretsAreMaskedInEveryForm() {
        let secret = "reg1stered/secret+value \"q\""
        SecretRedaction.register(Secret(secret))
        let forms = [
            secret, PercentEncoding.encode(secret), Data(secret.utf8).base64EncodedString(),
            #"reg1stered\/secret+value \"q\""#,
        ]
        for form in forms {
            #expect(SecretRedaction.redact("before \(form) after") == "before <redacted> after", "\(form)")
        }
        #expect(SecretRedaction.redact("abc") == "abc")
    }

    @Test func urlPasswordsAreMaskedWherever() {
        #expect(
            SecretRedaction.redact("proxy http://alice:pa55word@proxy.example:3128 refused")
                == "proxy http://alice:<redacted>@proxy.example:3128 refused")
        #expect(
            SecretRedaction.redact("https://u:p@a.example/x and http://b.example:80/y?q=1 and https://v@c.example")
                == "https://u:<redacted>@a.example/x and http://b.example:80/y?q=1 and https://v@c.example")
    }
}
