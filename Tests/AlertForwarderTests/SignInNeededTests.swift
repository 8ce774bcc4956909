import DefenderAPI
import DefenderSimulator
import Foundation
import OrderedJSON
import Synchronization
import TestSupport
import Testing
import Timekeeping

@testable import AlertForwarder

/// User context, when nobody is signed in (or the sign-in was refused): the poller logs it when
/// it starts, then at most hourly, and once when polling works again. Before issue 23 a poll a
/// second wrote an error line a second (22 lines in 20 s).
@Suite("A sign-in needed in the poller's log")
struct SignInNeededTests {
    static let publicClient = "0a6e9f2c-51d4-4c7e-9b8a-3f2e1d0c9b8a"

    /// Keeps the refresh token in memory.
    final class Keeper: RefreshTokenKeeper {
        let stored = Mutex<Secret?>(nil)
        func load() throws -> Secret? { stored.withLock { $0 } }
        func save(_ token: Secret) throws { stored.withLock { $0 = token } }
        var signInCommand: String { "defender-alertd login --tenant contoso" }
    }

    @Test func loggedWhenItStartsThenHourlyAndOnceWhenPollingResumes() async throws {
        let fixture = ConfigFixture()
        let simulator = try fixtureSimulator()
        var app = RegisteredApp(tenantID: SimulatorConfiguration.defaultTenant.id, clientID: Self.publicClient)
        app.isPublicClient = true
        try await simulator.register(app)
        try await simulator.add(SimulatedUser(userPrincipalName: "analyst@contoso.com"))
        let records = LogRecords()
        let manual = ManualClock()
        try await withLiveSimulatorAndClient(simulator) { base, transport in
            let configuration = try fixture.load(ConfigFixture.tenant + "\napi_url = \"\(base)\"\nlogin_url = \"\(base)\"\n" + ConfigFixture.sink)
            let tenant = configuration.tenants[0]
            let keeper = Keeper()
            let tokens = TokenProvider(
                configuration: .init(
                    tenantID: tenant.tenantID, clientID: Self.publicClient, credential: .refreshToken(keeper),
                    endpoints: tenant.endpoints),
                transport: transport, clock: manual.clock, random: { 0.5 }, logger: LogRecords().logger())
            let poller = TenantPoller(
                tenant: tenant,
                clients: try TenantClients(
                    tenant: tenant, transport: transport, clock: manual.clock, tokens: tokens,
                    logger: LogRecords().logger()),
                store: try StateStore.embedded(directory: fixture.directory.file("state")), sinks: ["journal"], maxOutbox: 1_000,
                clock: manual.clock, logger: records.logger())
            func errorLines() -> Int { records.at(.error).filter { $0.message.hasPrefix("poll failed") }.count }

            // A poll a second for 20 s: one error line, the rest at debug level.
            for _ in 0...20 {
                guard case .failed(let reason) = await poller.pollOnce() else { Issue.record("a poll succeeded without a sign-in"); return }
                #expect(reason.contains("defender-alertd login --tenant contoso"))
                manual.advance(by: .seconds(1))
            }
            #expect(errorLines() == 1, "\(records.at(.error).map(\.message))")
            #expect(records.at(.debug).filter { $0.message.contains("sign-in still needed") }.count == 20)
            // An hour on: written again, with the count of those left out.
            manual.advance(by: .seconds(3600))
            _ = await poller.pollOnce()
            #expect(errorLines() == 2)
            #expect(records.at(.error).last?.metadata["repeats_not_logged"] == "20")

            // Someone signs in: polling resumes, said once.
            let signedIn = try await DeviceCodeLogin(
                endpoints: tenant.endpoints, tenantID: tenant.tenantID, clientID: Self.publicClient,
                transport: transport, clock: manual.clock, logger: LogRecords().logger()
            )
            .run { prompt in try? await simulator.decideDeviceCode(prompt.userCode, user: "analyst@contoso.com") }
            try keeper.save(signedIn.refreshToken)
            #expect(await poller.pollOnce() == .completed(newAlerts: 0, duplicates: 0))
            #expect(await poller.pollOnce() == .completed(newAlerts: 0, duplicates: 0))
            #expect(records.at(.notice).filter { $0.message.contains("signed in again") }.count == 1)
            #expect(errorLines() == 2)
        }
    }

    /// Other failures are not throttled: each is logged.
    @Test func otherFailuresAreEachLogged() async throws {
        let fixture = ConfigFixture()
        let simulator = try fixtureSimulator()
        let records = LogRecords()
        let manual = ManualClock()
        try await withLiveSimulatorAndClient(simulator) { base, transport in
            // A wrong secret: a permanent error, but not a sign-in.
            fixture.directory.write("secret", "wrong-secret\n", mode: 0o600)
            let configuration = try fixture.load(ConfigFixture.tenant + "\napi_url = \"\(base)\"\nlogin_url = \"\(base)\"\n" + ConfigFixture.sink)
            let tenant = configuration.tenants[0]
            let poller = TenantPoller(
                tenant: tenant,
                clients: try TenantClients(tenant: tenant, transport: transport, clock: manual.clock, logger: LogRecords().logger()),
                store: try StateStore.embedded(directory: fixture.directory.file("state")), sinks: ["journal"], maxOutbox: 1_000,
                clock: manual.clock, logger: records.logger())
            for _ in 0..<3 {
                _ = await poller.pollOnce()
                manual.advance(by: .seconds(1))
            }
            #expect(records.at(.error).filter { $0.message.hasPrefix("poll failed") }.count == 3)
        }
    }
}

@Suite("What login prints")
struct LoginOutputTests {
    /// A user name (or scope) from Entra ID's answer holding a line break or escapes cannot forge
    /// a line of `login`'s output.
    @Test func theUserNameAndScopesAreEscaped() {
        let outcome = UserSignIn.Outcome(
            user: "ana@contoso.com\nSigned in as admin@contoso.com with everything.\u{1B}[2J",
            scopes: ["https://api.securitycenter.microsoft.com/Alert.Read\u{2028}x"], path: "/var/lib/defender-alertd/user-tokens/contoso.token",
            sealing: .sealed)
        let summary = outcome.summary
        #expect(summary.split(separator: "\n").count == 2, "\(summary)")
        #expect(
            summary.hasPrefix(
                #"Signed in as ana@contoso.com\u000aSigned in as admin@contoso.com with everything.\u001b[2J with https://api.securitycenter.microsoft.com/Alert.Read\u2028x."#
            ),
            "\(summary)")
        #expect(!summary.unicodeScalars.contains { PrintableText.isUnsafe($0) && $0 != "\n" })
        let plain = UserSignIn.Outcome(
            user: "analyst@contoso.com", scopes: ["https://api.securitycenter.microsoft.com/Alert.Read", "openid"],
            path: "/p", sealing: .sealed
        ).summary
        #expect(plain.hasPrefix("Signed in as analyst@contoso.com with https://api.securitycenter.microsoft.com/Alert.Read openid.\n"))
    }
}
