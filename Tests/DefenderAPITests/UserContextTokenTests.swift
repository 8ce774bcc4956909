import DefenderAPI
import DefenderSimulator
import Foundation
import Synchronization
import Testing
import Timekeeping
import TestSupport

/// The token provider in user context: renewals redeem the stored refresh token and store
/// the rotated one; a refused grant stops renewals, with the command to sign in again, until a
/// new sign-in is stored.
@Suite("Tokens in user context")
struct UserContextTokenTests {
    static let publicClient = APIHarness.publicClient
    let harness: APIHarness

    init() throws {
        harness = try APIHarness.withPublicClient()
    }

    /// Keeps the token in memory and remembers every one stored.
    final class Keeper: RefreshTokenKeeper {
        let stored = Mutex<[Secret]>([])
        func load() throws -> Secret? { stored.withLock { $0.last } }
        func save(_ token: Secret) throws { stored.withLock { $0.append(token) } }
        var signInCommand: String { "defender-alertd login --tenant contoso" }
    }

    /// Signs the analyst in; the refresh token it brought.
    func signIn(_ base: String, _ transport: any HTTPTransport) async throws -> Secret {
        let simulator = harness.simulator
        return try await DeviceCodeLogin(endpoints: harness.endpoints(base), tenantID: APIHarness.tenant, clientID: Self.publicClient,
                                         transport: transport, clock: harness.clock.clock, logger: harness.records.logger())
            .run { prompt in try? await simulator.decideDeviceCode(prompt.userCode, user: "analyst@contoso.com") }.refreshToken
    }

    func provider(_ base: String, _ transport: any HTTPTransport, keeper: Keeper) -> TokenProvider {
        let clock = harness.simulatorClock
        return TokenProvider(configuration: .init(tenantID: APIHarness.tenant, clientID: Self.publicClient, credential: .refreshToken(keeper),
                                                  endpoints: harness.endpoints(base)),
                             transport: transport, clock: harness.clock.clock, wallClock: { clock.now().date }, random: { 0.5 },
                             logger: harness.records.logger(label: "token"))
    }

    @Test func renewalsRotateTheStoredTokenAndNeverReuseOne() async throws {
        try await harness.live { base, transport in
            let keeper = Keeper()
            try keeper.save(try await signIn(base, transport))
            let tokens = provider(base, transport, keeper: keeper)
            for _ in 0..<4 {
                let access = try await tokens.token()
                #expect(access.audience == "https://api.securitycenter.microsoft.com")
                await tokens.invalidate(access)
            }
            let stored = keeper.stored.withLock { $0 }
            #expect(stored.count == 5 && Set(stored.map { $0.withValue { $0 } }).count == 5, "each renewal stored a new token")
            let counters = await harness.simulator.counterSnapshot
            #expect(counters.refreshTokensRedeemed == 4 && counters.refreshTokensReused == 0)
            // The delegated token reads alerts.
            let access = try await tokens.token()
            let outcome = await harness.simulator.handle(SimulatorRequest(method: "GET", path: "/api/alerts",
                                                                          headers: [("Authorization", access.value.withValue { "Bearer \($0)" })],
                                                                          baseURL: base))
            #expect(outcome.response.status == 200)
        }
    }

    @Test func aRevokedSignInStopsRenewalsWithTheFixUntilANewSignIn() async throws {
        try await harness.live { base, transport in
            let keeper = Keeper()
            try keeper.save(try await signIn(base, transport))
            let tokens = provider(base, transport, keeper: keeper)
            await tokens.invalidate(try await tokens.token())
            try await harness.simulator.revokeUser("analyst@contoso.com")
            let refused = await capture { () async throws(TokenError) in try await tokens.token() }
            guard case .failure(let error) = refused else { Issue.record("a revoked token was renewed"); return }
            #expect(error.kind == .permanent && error.code == 50173)
            #expect(error.description.contains("run `defender-alertd login --tenant contoso`"), "\(error)")
            // Asked again (a later poll, after any back-off): no request to Entra ID at all.
            let before = await harness.simulator.counterSnapshot.total("token_v2")
            harness.clock.advance(by: .seconds(3600))
            _ = await capture { () async throws(TokenError) in try await tokens.token() }
            #expect(await harness.simulator.counterSnapshot.total("token_v2") == before)
            // A new sign-in is picked up without a restart.
            try await harness.simulator.add(SimulatedUser(userPrincipalName: "analyst@contoso.com"))
            try keeper.save(try await signIn(base, transport))
            // At once: the back-off after the refusal does not hold a new sign-in back.
            #expect(try await tokens.token().audience == "https://api.securitycenter.microsoft.com")
        }
    }

    @Test func nobodySignedInSaysWhatToRun() async throws {
        try await harness.live { base, transport in
            let refused = await capture { () async throws(TokenError) in try await provider(base, transport, keeper: Keeper()).token() }
            guard case .failure(let error) = refused else { Issue.record("a token without a sign-in"); return }
            #expect(error.description.contains("nobody has signed in") && error.description.contains("defender-alertd login --tenant contoso"))
        }
    }
}
