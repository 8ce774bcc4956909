import DefenderAPI
import DefenderSimulator
import Foundation
import OrderedJSON
import Synchronization
import TestSupport
import Testing
import Timekeeping

/// The token provider in user context: renewals redeem the stored refresh token and store
/// the rotated one; a refused grant stops renewals, with the command to sign in again, until a
/// new sign-in is stored.
@Suite("Tokens in user context")
struct UserContextTokenTests {
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

    func signIn(_ base: String, _ transport: any HTTPTransport) async throws -> Secret {
        try await harness.signIn(base: base, transport: transport).refreshToken
    }

    /// A refresh token got by talking to the simulator directly, not through the client.
    func rawRefreshToken() async throws -> Secret {
        func post(_ path: String, _ form: String) async throws -> JSONValue {
            let response = await harness.simulator.handle(
                SimulatorRequest(
                    method: "POST", path: "/\(APIHarness.tenant)/oauth2/v2.0/\(path)",
                    headers: [("Content-Type", "application/x-www-form-urlencoded")],
                    body: Data(form.utf8), baseURL: "http://127.0.0.1")
            ).response
            return try JSONValue(parsing: response.body)
        }
        let authorization = try await post(
            "devicecode", "client_id=\(APIHarness.publicClient)&scope=https%3A%2F%2Fapi.securitycenter.microsoft.com%2FAlert.Read%20offline_access")
        try await harness.simulator.decideDeviceCode(authorization["user_code"]?.stringValue ?? "", user: "analyst@contoso.com")
        let code = authorization["device_code"]?.stringValue ?? ""
        let tokens = try await post(
            "token", "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=\(APIHarness.publicClient)&device_code=\(code)")
        return Secret(try #require(tokens["refresh_token"]?.stringValue))
    }

    func provider(_ base: String, _ transport: any HTTPTransport, keeper: Keeper) -> TokenProvider {
        let clock = harness.simulatorClock
        return TokenProvider(
            configuration: .init(
                tenantID: APIHarness.tenant, clientID: APIHarness.publicClient, credential: .refreshToken(keeper),
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
            let outcome = await harness.simulator.handle(
                SimulatorRequest(
                    method: "GET", path: "/api/alerts",
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

    @Test func anEndpointEchoingTheRequestNeverPutsTheRefreshTokenInAnError() async throws {
        try await harness.live { base, transport in
            let keeper = Keeper()
            // Straight from the simulator: a token this process never registered for masking
            // (the sign-in and the store register theirs), so only the request's own mask can hide it.
            let token = try await rawRefreshToken()
            try keeper.save(token)
            try await harness.simulator.addFault(Fault(target: .token, kind: .echo, count: 1))
            let echoed = await capture { () async throws(TokenError) in try await provider(base, transport, keeper: keeper).token() }
            guard case .failure(let error) = echoed else { Issue.record("an echoing endpoint gave a token"); return }
            #expect(error.description.contains("refresh_token="), "the echo is the request body: \(error)")
            #expect(!error.description.contains(token.withValue { $0 }), "\(error)")
            #expect(!harness.records.all.contains { "\($0.message) \($0.metadata)".contains(token.withValue { $0 }) })
        }
    }

    /// MFA or Conditional Access now required, or the sign-in expired: Entra ID refuses the
    /// refresh (`interaction_required` or `invalid_grant`), and the error says to sign in again,
    /// as for a revocation. Before issue 23 an `interaction_required` refusal was an ordinary
    /// permanent error, asked again after each back-off, with no command to run.
    @Test(arguments: [
        (EntraErrorCode.strongAuthRequired, String?.none), (.strongAuthEnrollmentRequired, nil), (.externalSecurityChallenge, nil),
        (.blockedByConditionalAccess, nil), (.refreshTokenInactive, nil), (.strongAuthRequired, "invalid_grant"),
    ])
    func aRefreshRefusedForMFAConditionalAccessOrExpiryNeedsASignIn(code: EntraErrorCode, error: String?) async throws {
        try await harness.live { base, transport in
            let keeper = Keeper()
            try keeper.save(try await signIn(base, transport))
            let tokens = provider(base, transport, keeper: keeper)
            await tokens.invalidate(try await tokens.token())
            try await harness.simulator.refuseRefreshes(of: "analyst@contoso.com", code: code, error: error)
            let refused = await capture { () async throws(TokenError) in try await tokens.token() }
            guard case .failure(let refusal) = refused else { Issue.record("a refused refresh gave a token"); return }
            #expect(refusal.kind == .permanent && refusal.code == code.rawValue, "\(refusal)")
            #expect(refusal.signInCommand == "defender-alertd login --tenant contoso")
            #expect(refusal.description.contains("sign-in needed, run `defender-alertd login --tenant contoso`"), "\(refusal)")
            // Not asked again with the refused token, however long the daemon goes on.
            let before = await harness.simulator.counterSnapshot.total("token_v2")
            harness.clock.advance(by: .seconds(3600))
            _ = await capture { () async throws(TokenError) in try await tokens.token() }
            #expect(await harness.simulator.counterSnapshot.total("token_v2") == before)
            // The person signs in again (meeting the challenge): tokens come at once.
            try keeper.save(try await signIn(base, transport))
            #expect(try await tokens.token().audience == "https://api.securitycenter.microsoft.com")
        }
    }

    /// A refresh token unused for 90 days is refused with AADSTS700082 by the simulator itself.
    @Test func aSignInUnusedFor90DaysNeedsASignIn() async throws {
        try await harness.live { base, transport in
            let keeper = Keeper()
            try keeper.save(try await signIn(base, transport))
            let tokens = provider(base, transport, keeper: keeper)
            await tokens.invalidate(try await tokens.token())
            harness.simulatorClock.advance(seconds: 91 * 86_400)
            let refused = await capture { () async throws(TokenError) in try await tokens.token() }
            guard case .failure(let refusal) = refused else { Issue.record("an expired refresh token gave a token"); return }
            #expect(refusal.code == 700082 && refusal.error == "invalid_grant" && refusal.needsSignIn, "\(refusal)")
            #expect(refusal.hint?.contains("unused too long") == true, "\(refusal)")
        }
    }

    /// The sign-in needed is logged when it starts, then at most hourly while it lasts (the
    /// provider asks itself again after each back-off), and once when it ends. Before issue 23
    /// it was logged at each attempt.
    @Test func aSignInNeededIsLoggedWhenItStartsThenHourlyAndWhenItEnds() async throws {
        try await harness.live { base, transport in
            let keeper = Keeper()
            try keeper.save(try await signIn(base, transport))
            let tokens = provider(base, transport, keeper: keeper)
            await tokens.invalidate(try await tokens.token())
            try await harness.simulator.refuseRefreshes(of: "analyst@contoso.com", code: .strongAuthRequired)
            func errorLines() -> Int {
                harness.records.at(.error).filter { $0.message.contains("sign-in needed") }.count
            }
            _ = await capture { () async throws(TokenError) in try await tokens.token() }
            #expect(errorLines() == 1)
            // Attempts after each back-off (at most 900 s) within the hour: not written again.
            for _ in 0..<3 {
                harness.clock.advance(by: .seconds(1000))
                _ = await capture { () async throws(TokenError) in try await tokens.token() }
            }
            #expect(errorLines() == 1, "\(harness.records.at(.error).map(\.message))")
            #expect(harness.records.at(.debug).contains { $0.message.contains("sign-in still needed") })
            // An hour after the first: written again, with the count of those left out.
            harness.clock.advance(by: .seconds(1000))
            _ = await capture { () async throws(TokenError) in try await tokens.token() }
            #expect(errorLines() == 2)
            #expect(harness.records.at(.error).last?.metadata["repeats_not_logged"] == "3")
            // A new sign-in: one line says it ended.
            try keeper.save(try await signIn(base, transport))
            _ = try await tokens.token()
            #expect(harness.records.at(.notice).filter { $0.message.contains("signed in again") }.count == 1)
        }
    }

    @Test func nobodySignedInSaysWhatToRun() async throws {
        try await harness.live { base, transport in
            let refused = await capture { () async throws(TokenError) in try await provider(base, transport, keeper: Keeper()).token() }
            guard case .failure(let error) = refused else { Issue.record("a token without a sign-in"); return }
            #expect(error.description.contains("nobody has signed in") && error.description.contains("defender-alertd login --tenant contoso"))
            #expect(error.signInCommand == "defender-alertd login --tenant contoso")
        }
    }
}
