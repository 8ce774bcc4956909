import DefenderSimulator
import Foundation
import OrderedJSON
import Testing
import Timekeeping

/// User context in the simulated Entra ID: the device authorization grant as Microsoft
/// documents it (v2-oauth2-device-code), refresh tokens rotated at each use and revocable, and
/// delegated tokens (`scp`, the user) that see only the user's device groups.
@Suite("Simulated Entra ID: device code flow and refresh tokens")
struct DeviceCodeTests {
    static let publicClient = "0a6e9f2c-51d4-4c7e-9b8a-3f2e1d0c9b8a"
    static let scope = "https://api.securitycenter.microsoft.com/Alert.Read offline_access openid"
    let harness: SimulatorHarness

    init() throws {
        harness = try SimulatorHarness { configuration in
            var app = RegisteredApp(tenantID: SimulatorHarness.tenant, clientID: Self.publicClient, displayName: "alertd-user-context")
            app.isPublicClient = true
            configuration.apps.append(app)
            configuration.users = [SimulatedUser(userPrincipalName: "analyst@contoso.com", displayName: "Ana Lyst", deviceGroups: ["Servers-Tier0"])]
        }
    }

    func deviceCode(client: String = publicClient, scope: String = scope) async throws -> JSONValue {
        let response = await harness.simulator.handle(
            SimulatorRequest(
                method: "POST", path: "/\(SimulatorHarness.tenant)/oauth2/v2.0/devicecode",
                headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: SimulatorHarness.form(["client_id": client, "scope": scope]), baseURL: SimulatorHarness.base)
        ).response
        #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
        return try JSONValue(parsing: response.body)
    }

    func poll(_ deviceCode: String, client: String = publicClient) async throws -> (status: Int, body: JSONValue) {
        let response = await harness.token(fields: [
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": client,
            "device_code": deviceCode,
        ])
        return (response.status, try JSONValue(parsing: response.body))
    }

    func control(_ path: String, _ body: String) async -> Int {
        await harness.simulator.handle(
            SimulatorRequest(
                method: "POST", path: "/_simulator/" + path, headers: [("Content-Type", "application/json")],
                body: Data(body.utf8), baseURL: SimulatorHarness.base)
        ).response.status
    }

    /// Device code, approved as the analyst, redeemed: the token answer.
    func signIn() async throws -> JSONValue {
        let authorization = try await deviceCode()
        let code = try #require(authorization["device_code"]?.stringValue)
        #expect(
            await control(
                "devicecode/approve",
                #"{"userCode": "\#(authorization["user_code"]?.stringValue ?? "")", "userPrincipalName": "analyst@contoso.com"}"#) == 200)
        let (status, tokens) = try await poll(code)
        #expect(status == 200, "\(tokens.serialized)")
        return tokens
    }

    @Test func theDeviceAuthorizationAnswersAsDocumented() async throws {
        let body = try await deviceCode()
        let fixture = try SimulatorHarness.fixture("devicecode-response.json")
        #expect(body.keys == fixture.keys)
        for key in fixture.keys { #expect(body[key]?.kind == fixture[key]?.kind, "\(key)") }
        #expect(body["expires_in"] == .number("900") && body["interval"] == .number("5"))
        let userCode = try #require(body["user_code"]?.stringValue)
        #expect(body["message"]?.stringValue?.contains("https://microsoft.com/devicelogin and enter the code \(userCode)") == true)
    }

    @Test func pendingThenApprovedGivesUserTokensWithScopesAndTheUser() async throws {
        let authorization = try await deviceCode()
        let code = try #require(authorization["device_code"]?.stringValue)
        let pending = try await poll(code)
        #expect(pending.status == 400 && pending.body["error"] == .string("authorization_pending"))
        #expect(pending.body["error_codes"] == .array([.int(70016)]))
        #expect(pending.body.keys == (try SimulatorHarness.fixture("token-error-authorization-pending.json")).keys)
        #expect(
            await control(
                "devicecode/approve",
                #"{"userCode": "\#(authorization["user_code"]?.stringValue ?? "")", "userPrincipalName": "analyst@contoso.com"}"#) == 200)
        let (status, tokens) = try await poll(code)
        #expect(status == 200, "\(tokens.serialized)")
        #expect(tokens.keys == (try SimulatorHarness.fixture("token-v2-device-code.json")).keys)
        #expect(tokens["scope"] == .string("https://api.securitycenter.microsoft.com/Alert.Read openid"))
        #expect(tokens["refresh_token"]?.stringValue?.isEmpty == false && tokens["id_token"]?.stringValue?.isEmpty == false)
        let claims = try SimulatorHarness.claims(try #require(tokens["access_token"]?.stringValue))
        #expect(claims["scp"] == .string("Alert.Read") && claims["roles"] == nil)
        #expect(claims["upn"] == .string("analyst@contoso.com") && claims["aud"] == .string("https://api.securitycenter.microsoft.com"))
        let identity = try SimulatorHarness.claims(try #require(tokens["id_token"]?.stringValue))
        #expect(identity["preferred_username"] == .string("analyst@contoso.com") && identity["aud"] == .string(Self.publicClient))
        // A device code is redeemed once.
        let again = try await poll(code)
        #expect(again.status == 400 && again.body["error"] == .string("bad_verification_code"))
    }

    @Test func declinedExpiredUnknownAndSlowDown() async throws {
        let declined = try await deviceCode()
        #expect(await control("devicecode/decline", #"{"userCode": "\#(declined["user_code"]?.stringValue ?? "")"}"#) == 200)
        let refusal = try await poll(try #require(declined["device_code"]?.stringValue))
        #expect(refusal.status == 400 && refusal.body["error"] == .string("authorization_declined") && refusal.body["error_codes"] == nil)

        let unknown = try await poll("not-a-device-code")
        #expect(unknown.body["error"] == .string("bad_verification_code") && unknown.body["error_codes"] == .array([.int(70018)]))

        #expect(await control("devicecode/slow-down", #"{"on": true}"#) == 200)
        let code = try #require(try await deviceCode()["device_code"]?.stringValue)
        #expect(try await poll(code).body["error"] == .string("authorization_pending"))
        #expect(try await poll(code).body["error"] == .string("slow_down"), "a poll within the interval")
        harness.clock.advance(seconds: 10)
        #expect(try await poll(code).body["error"] == .string("authorization_pending"))
        harness.clock.advance(seconds: 901)
        let expired = try await poll(code)
        #expect(expired.body["error"] == .string("expired_token") && expired.body["error_codes"] == .array([.int(70019)]))
    }

    @Test func aConfidentialClientMustProveItselfAndConsentIsChecked() async throws {
        // The harness's own app is confidential: the device code is fine, redeeming it needs the secret.
        let authorization = try await deviceCode(client: SimulatorHarness.client)
        #expect(
            await control(
                "devicecode/approve",
                #"{"userCode": "\#(authorization["user_code"]?.stringValue ?? "")", "userPrincipalName": "analyst@contoso.com"}"#) == 200)
        let unproven = try await poll(try #require(authorization["device_code"]?.stringValue), client: SimulatorHarness.client)
        #expect(unproven.status == 401 && unproven.body["error_codes"] == .array([.int(7000218)]))
        // A permission nobody consented to.
        let write = try await deviceCode(scope: "https://api.securitycenter.microsoft.com/Alert.ReadWrite offline_access")
        #expect(
            await control(
                "devicecode/approve", #"{"userCode": "\#(write["user_code"]?.stringValue ?? "")", "userPrincipalName": "analyst@contoso.com"}"#)
                == 200)
        let refused = try await poll(try #require(write["device_code"]?.stringValue))
        #expect(refused.body["error"] == .string("invalid_grant") && refused.body["error_codes"] == .array([.int(65001)]))
    }

    @Test func refreshTokensRotateStayValidUntilRevokedAndCountReuse() async throws {
        let first = try #require(try await signIn()["refresh_token"]?.stringValue)
        func refresh(_ token: String) async throws -> (status: Int, body: JSONValue) {
            let response = await harness.token(fields: ["grant_type": "refresh_token", "client_id": Self.publicClient, "refresh_token": token])
            return (response.status, try JSONValue(parsing: response.body))
        }
        let second = try await refresh(first)
        #expect(second.status == 200)
        let rotated = try #require(second.body["refresh_token"]?.stringValue)
        #expect(rotated != first)
        #expect(await harness.simulator.counterSnapshot.refreshTokensReused == 0)
        // The one used before still works (as Entra's do: a client that crashed before storing
        // the new one goes on), and the simulator counts that it was used again.
        #expect(try await refresh(first).status == 200)
        #expect(await harness.simulator.counterSnapshot.refreshTokensReused == 1)
        // Revoked: every refresh token of the user, with Entra's code; its access tokens too.
        let access = try #require(second.body["access_token"]?.stringValue)
        #expect(await control("users/revoke", #"{"userPrincipalName": "analyst@contoso.com"}"#) == 200)
        let revoked = try await refresh(rotated)
        #expect(revoked.status == 400 && revoked.body["error"] == .string("invalid_grant") && revoked.body["error_codes"] == .array([.int(50173)]))
        #expect(await harness.get(token: access).response.status == 401)
        let garbage = try await refresh("not-a-refresh-token")
        #expect(garbage.body["error_codes"] == .array([.int(9002313)]))
    }

    /// The control API makes a user's refreshes fail as Entra ID's do when MFA or Conditional
    /// Access becomes required or the sign-in expired, until the user signs in again; a refresh
    /// token unused for 90 days is refused by itself (AADSTS700082).
    @Test func refreshesRefusedOnRequestUntilANewSignInAndAfter90DaysUnused() async throws {
        func refresh(_ token: String) async throws -> (status: Int, body: JSONValue) {
            let response = await harness.token(fields: ["grant_type": "refresh_token", "client_id": Self.publicClient, "refresh_token": token])
            return (response.status, try JSONValue(parsing: response.body))
        }
        let cases: [(code: Int, error: String?, expected: String)] = [
            (50076, nil, "interaction_required"), (50079, nil, "interaction_required"), (50158, nil, "interaction_required"),
            (53003, nil, "interaction_required"), (700082, nil, "invalid_grant"), (50173, nil, "invalid_grant"),
            (50076, "invalid_grant", "invalid_grant"),
        ]
        for (code, error, expected) in cases {
            let token = try #require(try await signIn()["refresh_token"]?.stringValue)
            let errorMember = error.map { #", "error": "\#($0)""# } ?? ""
            #expect(await control("users/refresh-failure", #"{"userPrincipalName": "analyst@contoso.com", "code": \#(code)\#(errorMember)}"#) == 200)
            let refused = try await refresh(token)
            #expect(
                refused.status == 400 && refused.body["error"] == .string(expected) && refused.body["error_codes"] == .array([.int(code)]), "\(code)")
            #expect(refused.body["error_description"]?.stringValue?.hasPrefix("AADSTS\(code): ") == true)
            // Until the user signs in again (the challenge met interactively).
            #expect(try await refresh(token).status == 400)
            let renewed = try #require(try await signIn()["refresh_token"]?.stringValue)
            #expect(try await refresh(renewed).status == 200, "\(code)")
        }
        // Only the codes of a refused refresh; and the refusal can be lifted.
        #expect(await control("users/refresh-failure", #"{"userPrincipalName": "analyst@contoso.com", "code": 7000215}"#) == 400)
        #expect(await control("users/refresh-failure", #"{"userPrincipalName": "analyst@contoso.com", "code": 1e300}"#) == 400)
        #expect(await control("users/refresh-failure", #"{"userPrincipalName": "nobody@contoso.com", "code": 50076}"#) == 400)
        let token = try #require(try await signIn()["refresh_token"]?.stringValue)
        #expect(await control("users/refresh-failure", #"{"userPrincipalName": "analyst@contoso.com", "code": 53003}"#) == 200)
        #expect(await control("users/refresh-failure", #"{"userPrincipalName": "analyst@contoso.com"}"#) == 200)
        #expect(try await refresh(token).status == 200)
        // 90 days unused.
        let idle = try #require(try await signIn()["refresh_token"]?.stringValue)
        harness.clock.advance(seconds: 90 * 86_400 + 1)
        let expired = try await refresh(idle)
        #expect(expired.body["error"] == .string("invalid_grant") && expired.body["error_codes"] == .array([.int(700082)]))
    }

    /// The control API can make the device code answer hostile (a message and a page of its own).
    @Test func theDeviceCodeAnswerCanBeMadeHostile() async throws {
        #expect(
            await control(
                "devicecode/answer",
                #"{"message": "\u001b]8;;https://evil.example/\u0007enter {code}\u001b]8;;\u0007", "verificationUri": "https://evil.example/devicelogin"}"#
            ) == 200)
        let hostile = try await deviceCode()
        let code = try #require(hostile["user_code"]?.stringValue)
        #expect(hostile["verification_uri"] == .string("https://evil.example/devicelogin"))
        #expect(hostile["message"] == .string("\u{1B}]8;;https://evil.example/\u{07}enter \(code)\u{1B}]8;;\u{07}"))
        #expect(await control("devicecode/answer", "{}") == 200)
        let plain = try await deviceCode()
        #expect(plain["verification_uri"] == .string("https://microsoft.com/devicelogin"))
    }

    @Test func throughGraphTooAUserSeesOnlyTheirDeviceGroups() async throws {
        _ = try await harness.simulator.generateAlerts(count: 40)
        let authorization = try await deviceCode(scope: "https://graph.microsoft.com/SecurityAlert.Read.All offline_access")
        let code = try #require(authorization["device_code"]?.stringValue)
        #expect(
            await control(
                "devicecode/approve",
                #"{"userCode": "\#(authorization["user_code"]?.stringValue ?? "")", "userPrincipalName": "analyst@contoso.com"}"#) == 200)
        let (status, tokens) = try await poll(code)
        #expect(status == 200 && tokens["scope"] == .string("SecurityAlert.Read.All"))
        let access = try #require(tokens["access_token"]?.stringValue)
        #expect(try SimulatorHarness.claims(access)["aud"] == .string("https://graph.microsoft.com"))
        let outcome = await harness.get("/v1.0/security/alerts_v2", query: "$count=true", token: access)
        #expect(outcome.response.status == 200)
        let body = try JSONValue(parsing: outcome.response.body)
        guard case .array(let values)? = body["value"] else { Issue.record("no value"); return }
        let groups = values.compactMap { value -> String? in
            guard case .array(let evidence)? = value["evidence"] else { return nil }
            return evidence.compactMap { $0["rbacGroupName"]?.stringValue }.first
        }
        #expect(!values.isEmpty && groups.count == values.count && groups.allSatisfy { $0 == "Servers-Tier0" })
        #expect(body["@odata.count"] == .int(values.count))
        // The MDE API refuses a Graph token, whoever holds it.
        #expect(await harness.get(token: access).response.status == 401)
    }

    @Test func aUserSeesOnlyTheAlertsOfTheirDeviceGroups() async throws {
        _ = try await harness.simulator.generateAlerts(count: 60)
        let all = try await harness.alerts(query: "", token: try await harness.accessToken())
        let access = try #require(try await signIn()["access_token"]?.stringValue)
        let seen = try await harness.alerts(query: "", token: access)
        let servers = all.filter { $0["rbacGroupName"] == .string("Servers-Tier0") }
        #expect(!servers.isEmpty && servers.count < all.count)
        #expect(seen.map { $0["id"] } == servers.map { $0["id"] })
        // Paging counts only what the user may see: $top = 1 with $skip walks exactly those.
        let second = try await harness.alerts(query: "$top=1&$skip=1", token: access)
        #expect(second.map { $0["id"] } == [servers[1]["id"]])
    }
}
