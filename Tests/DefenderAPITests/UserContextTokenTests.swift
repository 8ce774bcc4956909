import DefenderAPI
import DefenderSimulator
import Foundation
import OrderedJSON
import Synchronization
import Testing
import Timekeeping
import TestSupport

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
            let response = await harness.simulator.handle(SimulatorRequest(
                method: "POST", path: "/\(APIHarness.tenant)/oauth2/v2.0/\(path)", headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: Data(form.utf8), baseURL: "http://127.0.0.1")).response
            return try JSONValue(parsing: response.body)
        }
        let authorization = try await post("devicecode", "client_id=\(APIHarness.publicClient)&scope=https%3A%2F%2Fapi.securitycenter.microsoft.com%2FAlert.Read%20offline_access")
        try await harness.simulator.decideDeviceCode(authorization["user_code"]?.stringValue ?? "", user: "analyst@contoso.com")
        let code = authorization["device_code"]?.stringValue ?? ""
        let tokens = try await post("token", "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=\(APIHarness.publicClient)&device_code=\(code)")
        return Secret(try #require(tokens["refresh_token"]?.stringValue))
    }

    func provider(_ base: String, _ transport: any HTTPTransport, keeper: Keeper) -> TokenProvider {
        let clock = harness.simulatorClock
        return TokenProvider(configuration: .init(tenantID: APIHarness.tenant, clientID: APIHarness.publicClient, credential: .refreshToken(keeper),
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

    @Test func nobodySignedInSaysWhatToRun() async throws {
        try await harness.live { base, transport in
            let refused = await capture { () async throws(TokenError) in try await provider(base, transport, keeper: Keeper()).token() }
            guard case .failure(let error) = refused else { Issue.record("a token without a sign-in"); return }
            #expect(error.description.contains("nobody has signed in") && error.description.contains("defender-alertd login --tenant contoso"))
        }
    }
}
