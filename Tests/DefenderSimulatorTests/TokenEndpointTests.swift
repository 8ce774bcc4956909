import DefenderSimulator
import Foundation
import OrderedJSON
import Testing
import Timekeeping

@Suite("Simulated Entra ID token endpoints")
struct TokenEndpointTests {
    let harness: SimulatorHarness

    init() throws {
        harness = try SimulatorHarness { $0.tokenLifetime = 1200 }
    }

    @Test func v2SuccessHasNumbersLikeTheFixture() async throws {
        let response = await harness.secretToken()
        #expect(response.status == 200)
        #expect(response.header("Cache-Control") == "no-store, no-cache")
        #expect(response.header("Content-Type") == "application/json; charset=utf-8")
        let body = try JSONValue(parsing: response.body)
        let fixture = try SimulatorHarness.fixture("token-v2.json")
        #expect(body.keys == fixture.keys)
        for key in fixture.keys { #expect(body[key]?.kind == fixture[key]?.kind, "\(key)") }
        #expect(body["expires_in"] == .number("1200"))
    }

    @Test func v1SuccessHasNumbersAsStringsLikeTheFixture() async throws {
        let response = await harness.token(
            .v1,
            fields: [
                "grant_type": "client_credentials", "client_id": SimulatorHarness.client,
                "client_secret": SimulatorHarness.secret, "resource": "https://api.securitycenter.microsoft.com",
            ])
        #expect(response.status == 200)
        let body = try JSONValue(parsing: response.body)
        let fixture = try SimulatorHarness.fixture("token-v1.json")
        #expect(body.keys == fixture.keys)
        for key in fixture.keys { #expect(body[key]?.kind == fixture[key]?.kind, "\(key)") }
        let expiresOn = try #require(Int(body["expires_on"]?.stringValue ?? ""))
        let notBefore = try #require(Int(body["not_before"]?.stringValue ?? ""))
        #expect(expiresOn - notBefore == 1200 + 300)
        #expect(body["resource"] == .string("https://api.securitycenter.microsoft.com"))
    }

    @Test func issuedTokensAreJWTShapedWithTheClaimsOfAnAppToken() async throws {
        let token = try await harness.accessToken()
        let claims = try SimulatorHarness.claims(token)
        #expect(claims["aud"] == .string("https://api.securitycenter.microsoft.com"))
        #expect(claims["tid"] == .string(SimulatorHarness.tenant))
        #expect(claims["appid"] == .string(SimulatorHarness.client))
        #expect(claims["roles"] == .array([.string("Alert.Read.All")]))
        let start = SimulatorHarness.start.ticks / 10_000_000
        #expect(claims["iat"] == .number("\(start)"))
        #expect(claims["nbf"] == .number("\(start)"))
        #expect(claims["exp"] == .number("\(start + 1200)"))
    }

    @Test func graphScopeGetsGraphRoles() async throws {
        let response = await harness.secretToken(["scope": "https://graph.microsoft.com/.default"])
        let token = try #require(try JSONValue(parsing: response.body)["access_token"]?.stringValue)
        let claims = try SimulatorHarness.claims(token)
        #expect(claims["aud"] == .string("https://graph.microsoft.com"))
        #expect(claims["roles"] == .array([.string("SecurityAlert.Read.All"), .string("SecurityIncident.Read.All")]))
    }

    @Test func basicAuthenticationIsAccepted() async throws {
        var fields = ["grant_type": "client_credentials", "scope": "https://api.securitycenter.microsoft.com/.default"]
        fields["client_id"] = nil
        let credentials = Data("\(SimulatorHarness.client):\(SimulatorHarness.secret)".utf8).base64EncodedString()
        let response = await harness.simulator.handle(
            SimulatorRequest(
                method: "POST", path: "/\(SimulatorHarness.tenant)/oauth2/v2.0/token",
                headers: [("Authorization", "Basic \(credentials)")], body: SimulatorHarness.form(fields), baseURL: SimulatorHarness.base)
        ).response
        #expect(response.status == 200)
    }

    @Test func domainNamesWorkAsTenant() async throws {
        let response = await harness.token(
            .v2, tenant: "contoso.onmicrosoft.com",
            fields: [
                "grant_type": "client_credentials", "client_id": SimulatorHarness.client, "client_secret": SimulatorHarness.secret,
                "scope": "https://api.securitycenter.microsoft.com/.default",
            ])
        #expect(response.status == 200)
    }

    struct ErrorCase: Sendable, CustomTestStringConvertible {
        var name: String
        var version: TokenEndpointVersion = .v2
        var tenant = SimulatorHarness.tenant
        var overrides: [String: String] = [:]
        var removed: [String] = []
        var status: Int
        var error: String
        var code: Int
        var fixture: String?
        var testDescription: String { name }
    }

    static let errorCases: [ErrorCase] = [
        ErrorCase(
            name: "wrong secret", overrides: ["client_secret": "secret-id-instead-of-value"], status: 401, error: "invalid_client", code: 7000215,
            fixture: "token-error.json"),
        ErrorCase(
            name: "unknown tenant", tenant: "00000000-1111-2222-3333-444444444444", status: 400, error: "invalid_request", code: 90002,
            fixture: "token-error-unknown-tenant.json"),
        ErrorCase(
            name: "unknown client", overrides: ["client_id": "11111111-2222-3333-4444-555555555555"], status: 400, error: "unauthorized_client",
            code: 700016, fixture: "token-error-unknown-client.json"),
        ErrorCase(name: "unsupported grant", overrides: ["grant_type": "password"], status: 400, error: "unsupported_grant_type", code: 70003),
        ErrorCase(
            name: "bad scope", overrides: ["scope": "https://api.securitycenter.microsoft.com/Alert.Read.All"], status: 400, error: "invalid_scope",
            code: 70011),
        ErrorCase(
            name: "resource on v2", overrides: ["resource": "https://api.securitycenter.microsoft.com"], status: 400, error: "invalid_request",
            code: 901002),
        ErrorCase(
            name: "unknown resource", overrides: ["scope": "https://management.azure.com/.default"], status: 400, error: "invalid_resource",
            code: 500011, fixture: "token-error-resource-not-in-tenant.json"),
        ErrorCase(name: "missing scope", removed: ["scope"], status: 400, error: "invalid_request", code: 900144),
        ErrorCase(name: "no credential", removed: ["client_secret"], status: 401, error: "invalid_client", code: 7000218),
        ErrorCase(name: "v1 without resource", version: .v1, removed: ["scope"], status: 400, error: "invalid_request", code: 900144),
    ]

    @Test(arguments: errorCases)
    func errorsHaveTheDocumentedStatusAndShape(_ errorCase: ErrorCase) async throws {
        var fields = [
            "grant_type": "client_credentials", "client_id": SimulatorHarness.client, "client_secret": SimulatorHarness.secret,
            "scope": "https://api.securitycenter.microsoft.com/.default",
        ]
        fields.merge(errorCase.overrides) { _, new in new }
        for key in errorCase.removed { fields[key] = nil }
        let response = await harness.token(errorCase.version, tenant: errorCase.tenant, fields: fields)
        #expect(response.status == errorCase.status)
        #expect(response.header("Cache-Control") == "no-store, no-cache")
        let body = try JSONValue(parsing: response.body)
        #expect(body["error"] == .string(errorCase.error))
        #expect(body["error_codes"] == .array([.int(errorCase.code)]))
        let description = try #require(body["error_description"]?.stringValue)
        #expect(description.hasPrefix("AADSTS\(errorCase.code): "))
        #expect(description.contains("\r\nTrace ID: ") && description.contains("\r\nCorrelation ID: ") && description.contains("\r\nTimestamp: "))
        let fixture = try SimulatorHarness.fixture(errorCase.fixture ?? "token-error.json")
        #expect(body.keys == fixture.keys)
        #expect(body["timestamp"]?.stringValue?.wholeMatch(of: /\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ/) != nil)
        if let name = errorCase.fixture {
            #expect(body["error"] == (try SimulatorHarness.fixture(name))["error"])
        }
    }

    @Test func openIDDiscoveryPointsAtTheTokenEndpoint() async throws {
        let outcome = await harness.get("/\(SimulatorHarness.tenant)/v2.0/.well-known/openid-configuration", token: nil)
        #expect(outcome.response.status == 200)
        let document = try JSONValue(parsing: outcome.response.body)
        #expect(document["token_endpoint"] == .string("\(SimulatorHarness.base)/\(SimulatorHarness.tenant)/oauth2/v2.0/token"))
        #expect(document["issuer"] == .string("\(SimulatorHarness.base)/\(SimulatorHarness.tenant)/v2.0"))
        #expect(document["authorization_endpoint"] != nil)
    }
}
