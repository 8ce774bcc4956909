import DefenderAPI
import DefenderSimulator
import Foundation
import OrderedJSON
import TestSupport
import Testing
import Timekeeping

/// The device code sign-in (user context) against the simulated Entra ID over HTTP, its waits
/// on a manual clock.
@Suite("Device code sign-in")
struct DeviceCodeLoginTests {
    let harness: APIHarness

    init() throws {
        harness = try APIHarness.withPublicClient()
    }

    func login(_ base: String, _ transport: any HTTPTransport, api: AlertsAPI = .mde) -> DeviceCodeLogin {
        harness.deviceCodeLogin(base: base, transport: transport, api: api)
    }

    /// Approves the sign-in once the simulator has answered `polls` polls.
    /// Signs in (approved at the first poll) and returns the prompt the user was shown.
    func signedInPrompt(_ base: String, _ transport: any HTTPTransport) async throws -> DeviceCodeLogin.Prompt {
        let shown = LockedBox<DeviceCodeLogin.Prompt?>(nil)
        _ = try await login(base, transport).run { prompt in
            shown.value = prompt
            approve(prompt, after: 1)
        }
        return try #require(shown.value)
    }

    func approve(_ prompt: DeviceCodeLogin.Prompt, after polls: Int) {
        let simulator = harness.simulator
        Task {
            while await simulator.counterSnapshot.deviceCodePolls < polls { await Task.yield() }
            try await simulator.decideDeviceCode(prompt.userCode, user: "analyst@contoso.com")
        }
    }

    @Test func aSignInWaitsWhilePendingAndBringsTheRefreshTokenAndTheUser() async throws {
        try await harness.live { base, transport in
            let shown = LockedBox<DeviceCodeLogin.Prompt?>(nil)
            let tokens = try await login(base, transport).run { prompt in
                shown.value = prompt
                approve(prompt, after: 3)
            }
            let prompt = try #require(shown.value)
            #expect(prompt.message.contains("https://microsoft.com/devicelogin and enter the code \(prompt.userCode)"))
            #expect(prompt.expiresIn == .seconds(900))
            #expect(tokens.user == "analyst@contoso.com")
            #expect(tokens.scopes.contains("https://api.securitycenter.microsoft.com/Alert.Read"))
            #expect(!tokens.refreshToken.isEmpty)
            #expect(await harness.simulator.counterSnapshot.deviceCodePolls >= 4)
            // Polls 5 s apart, as the answer said.
            #expect(harness.clock.clock.now() >= .seconds(20))
            let refresh = tokens.refreshToken.withValue { $0 }
            #expect(!harness.records.all.contains { "\($0.message) \($0.metadata)".contains(refresh) })
        }
    }

    /// A hostile device code answer (the simulator told through its control API): a 2 MB
    /// message with terminal escapes and a disguised hyperlink, a page that is not Microsoft's.
    /// What `login` shows is printable, bounded, and warns about the page.
    @Test func aHostileAnswerIsShownAsPrintableBoundedTextWithAWarning() async throws {
        let message =
            "To sign in, open \u{1B}]8;;https://evil.example/\u{07}https://microsoft.com/devicelogin\u{1B}]8;;\u{07} and enter {code}.\u{1B}[2J"
            + String(repeating: "\u{202E}padding\u{85}", count: 200_000)
        await harness.simulator.setDeviceCodeAnswer(message: message, verificationURI: "https://microsoft.com.evil.example/devicelogin")
        try await harness.live { base, transport in
            let prompt = try await signedInPrompt(base, transport)
            #expect(prompt.message.utf8.count > 2_000_000, "the answer came as sent")
            #expect(!prompt.verificationURIIsMicrosofts)
            let text = prompt.instructions
            #expect(
                text.hasPrefix("Warning: the sign-in page in this answer, https://microsoft.com.evil.example/devicelogin, is not Microsoft's"),
                "\(text.prefix(300))")
            #expect(!text.unicodeScalars.contains { PrintableText.isUnsafe($0) && $0 != "\n" }, "nothing a terminal acts on")
            #expect(text.count < 1_600, "\(text.count)")
            #expect(text.contains("Code: \(prompt.userCode)"))
        }
        // Entra ID's own answer again: no warning.
        await harness.simulator.setDeviceCodeAnswer(message: nil, verificationURI: nil)
        try await harness.live { base, transport in
            let prompt = try await signedInPrompt(base, transport)
            #expect(prompt.verificationURIIsMicrosofts && prompt.instructions == prompt.message + "\n")
        }
    }

    @Test func slowDownLengthensTheInterval() async throws {
        await harness.simulator.setDeviceCodeSlowDown(true)
        try await harness.live { base, transport in
            _ = try await login(base, transport).run { prompt in approve(prompt, after: 4) }
            // 5 s, then slow_down each time (the simulator's clock stands still): 10, 15, 20 s.
            #expect(harness.clock.clock.now() >= .seconds(5 + 10 + 15 + 20))
            #expect(harness.records.all.contains { $0.message.contains("poll more slowly") })
        }
    }

    @Test func aDeclinedOrExpiredSignInStopsWithTheFix() async throws {
        try await harness.live { base, transport in
            let simulator = harness.simulator
            let declined = await capture { () async throws(TokenError) in
                try await login(base, transport).run { prompt in try? await simulator.decideDeviceCode(prompt.userCode, user: nil) }
            }
            guard case .failure(let refusal) = declined else { Issue.record("a declined sign-in succeeded"); return }
            #expect(refusal.kind == .permanent && refusal.message == "the sign-in was declined")
            let clock = harness.simulatorClock
            let expired = await capture { () async throws(TokenError) in
                try await login(base, transport).run { _ in clock.advance(seconds: 901) }
            }
            guard case .failure(let late) = expired else { Issue.record("an expired code succeeded"); return }
            #expect(late.error == "expired_token" && late.code == 70019)
            #expect(late.description.contains("run the login again"))
        }
    }

    @Test func graphAsksForItsOwnPermission() async throws {
        try await harness.live { base, transport in
            // The resource's own name, whatever the base URL (the token's audience).
            #expect(login(base, transport, api: .graph).scope == "https://graph.microsoft.com/SecurityAlert.Read.All offline_access openid profile")
            #expect(login(base, transport).scope == "https://api.securitycenter.microsoft.com/Alert.Read offline_access openid profile")
        }
    }
}

/// A value a test's closures set and read.
final class LockedBox<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
