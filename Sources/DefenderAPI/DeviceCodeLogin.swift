import Foundation
import Logging
import OrderedJSON
import Timekeeping

/// Signs a user in with the OAuth 2.0 device authorization grant on Entra ID's v2 endpoint
/// (user context): asks `/devicecode` for a code, hands the person the instructions as Entra ID
/// wrote them, and polls `/token` until the person has signed in, honouring `interval`,
/// `authorization_pending` and `slow_down`, and stopping at `authorization_declined`,
/// `expired_token` or `bad_verification_code`.
///
/// The refresh token it brings back is a secret: it is handed to the caller wrapped, and
/// registered for masking, never logged.
public struct DeviceCodeLogin: Sendable {
    /// What the person must do, as Entra ID wrote it. Every field came from outside: print
    /// ``instructions``, never the fields themselves.
    public struct Prompt: Sendable, Equatable {
        public var userCode: String
        public var verificationURI: String
        /// Entra ID's own instruction ("To sign in, use a web browser to open the page ...").
        public var message: String
        public var expiresIn: Duration
        /// Whether `verificationURI` is one of Microsoft's device sign-in pages, or a page of the
        /// sign-in host this login talks to (``isMicrosoftVerificationURI(_:loginBase:)``).
        public var verificationURIIsMicrosofts: Bool

        public init(userCode: String, verificationURI: String, message: String, expiresIn: Duration, verificationURIIsMicrosofts: Bool) {
            self.userCode = userCode
            self.verificationURI = verificationURI
            self.message = message
            self.expiresIn = expiresIn
            self.verificationURIIsMicrosofts = verificationURIIsMicrosofts
        }

        /// The longest instruction shown, in characters (Entra ID's is about 130).
        public static let messageLimit = 1_000

        /// What to show the person, as printable text (``PrintableText``): a warning first when
        /// the page is not Microsoft's; Entra ID's instruction, at most ``messageLimit``
        /// characters; and the page and code again when the instruction does not name both as
        /// they are (a disguised or cut-off one). Ends with a line break.
        public var instructions: String {
            let uri = PrintableText.shown(verificationURI, limit: 300)
            let code = PrintableText.shown(userCode, limit: 100)
            var lines: [String] = []
            if !verificationURIIsMicrosofts {
                lines.append(
                    "Warning: the sign-in page in this answer, \(uri), is not Microsoft's (\(DeviceCodeLogin.microsoftVerificationPages.joined(separator: ", "))). Do not enter the code there unless you know why: an answer from a proxy or a wrong login_url may be trying to capture the sign-in."
                )
            }
            lines.append(PrintableText.shown(message, limit: Self.messageLimit))
            let plain = PrintableText.isPrintable(message, limit: Self.messageLimit)
            if !plain || !message.contains(verificationURI) || !message.contains(userCode) {
                lines.append("Sign-in page: \(uri)  Code: \(code)")
            }
            return lines.joined(separator: "\n") + "\n"
        }
    }

    /// Microsoft's device sign-in pages: `microsoft.com/devicelogin` (Microsoft's device code
    /// documentation, https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code ,
    /// and MSAL's), `login.microsoft.com/device` (what Entra ID answers today), and
    /// `microsoft.com/deviceloginus` (US Government clouds, as MSAL's tests expect).
    public static let microsoftVerificationPages = [
        "https://microsoft.com/devicelogin", "https://login.microsoft.com/device",
        "https://microsoft.com/deviceloginus",
    ]

    /// Whether `uri` is one of ``microsoftVerificationPages`` (`www.` or a trailing slash
    /// allowed), or any page of the sign-in host this login talks to (`loginBase`, which is
    /// `login_url` when one is configured: the simulator on loopback). A URI with a user name
    /// (`https://microsoft.com@elsewhere/`), another scheme or port is not.
    public static func isMicrosoftVerificationURI(_ uri: String, loginBase: String) -> Bool {
        guard let components = URLComponents(string: uri), components.user == nil, components.password == nil,
            let host = components.host?.lowercased(), !host.isEmpty
        else { return false }
        if let login = URLComponents(string: loginBase), let loginHost = login.host?.lowercased(),
            host == loginHost, components.scheme?.lowercased() == login.scheme?.lowercased(), components.port == login.port
        {
            return true
        }
        guard components.scheme?.lowercased() == "https", components.port == nil || components.port == 443 else { return false }
        var path = components.path.lowercased()
        if path.hasSuffix("/") { path.removeLast() }
        let page = "https://" + (host.hasPrefix("www.") ? String(host.dropFirst(4)) : host) + path
        return microsoftVerificationPages.contains(page)
    }

    /// The tokens of a completed sign-in.
    public struct Tokens: Sendable {
        public var accessToken: AccessToken
        public var refreshToken: Secret
        /// The signed-in user's name (`preferred_username` of the ID token), when it came.
        public var user: String?
        /// The scopes granted (`scope` of the answer).
        public var scopes: [String]
    }

    private let endpoints: DefenderEndpoints
    private let tenantID: String
    private let clientID: String
    private let transport: any HTTPTransport
    private let clock: MonotonicClock
    private let logger: Logger
    /// Deadline of one request.
    var requestDeadline: Duration = .seconds(30)

    public init(
        endpoints: DefenderEndpoints, tenantID: String, clientID: String, transport: any HTTPTransport,
        clock: MonotonicClock = .continuous, logger: Logger
    ) {
        self.endpoints = endpoints
        self.tenantID = tenantID
        self.clientID = clientID
        self.transport = transport
        self.clock = clock
        self.logger = logger
    }

    /// The delegated permission asked for: `Alert.Read` on WindowsDefenderATP, or
    /// `SecurityAlert.Read.All` on Microsoft Graph; with a refresh token and the user's name.
    public var scope: String { endpoints.userScope }

    /// Runs the whole sign-in; `show` hears the prompt once, before polling starts.
    public func run(show: @Sendable (Prompt) async -> Void) async throws(TokenError) -> Tokens {
        let (prompt, deviceCode, firstInterval) = try await authorize()
        await show(prompt)
        var interval = firstInterval
        let deadline = clock.now() + prompt.expiresIn
        while true {
            do { try await clock.sleep(interval) } catch { throw TokenError(kind: .transient, message: "sign-in cancelled") }
            do {
                return try await redeem(deviceCode)
            } catch {
                switch error.error {
                case "authorization_pending":
                    continue
                case "slow_down":
                    interval += .seconds(5)
                    logger.info("Entra ID asked to poll more slowly", metadata: ["interval_seconds": "\(interval.components.seconds)"])
                case "authorization_declined", "access_denied":  // Entra ID's name, and RFC 8628's
                    throw TokenError(
                        kind: .permanent, status: error.status, error: error.error, code: error.code,
                        message: "the sign-in was declined", hint: "run the login again and accept the request.")
                case "expired_token", "bad_verification_code":
                    throw TokenError(
                        kind: .permanent, status: error.status, error: error.error, code: error.code,
                        message: "the code expired before the sign-in was completed (\(prompt.expiresIn.components.seconds / 60) minutes)",
                        hint: "run the login again and sign in within the time shown.")
                default:
                    guard error.kind == .transient, clock.now() < deadline else { throw error }
                    logger.warning("polling for the sign-in failed; trying again", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    /// `POST /{tenant}/oauth2/v2.0/devicecode`.
    private func authorize() async throws(TokenError) -> (Prompt, Secret, Duration) {
        let url = endpoints.deviceCodeURL(tenant: tenantID)
        let response = try await post(url, [("client_id", clientID), ("scope", scope)])
        guard response.status == 200 else {
            // Entra ID's error, classified (`interpret` throws for any status but 200).
            _ = try TokenProvider.interpret(response, endpoint: url, now: Date().timeIntervalSince1970)
            throw TokenError(kind: .transient, status: response.status, message: "the device code endpoint answered \(response.status)")
        }
        guard let body = try? JSONValue(parsing: response.body), let userCode = body["user_code"]?.stringValue,
            let deviceCode = body["device_code"]?.stringValue, let uri = body["verification_uri"]?.stringValue
        else {
            throw TokenError(
                kind: .transient, status: 200, message: "the device code endpoint answered without user_code, device_code and verification_uri",
                hint: "a proxy or captive portal may be answering instead of Entra ID.")
        }
        func number(_ name: String, _ fallback: Int64) -> Int64 {
            switch body[name] {
            case .number(let text)?, .string(let text)?: Int64(text).map { min(max($0, 1), 3600) } ?? fallback
            default: fallback
            }
        }
        let prompt = Prompt(
            userCode: userCode, verificationURI: uri,
            message: body["message"]?.stringValue ?? "To sign in, open \(uri) and enter the code \(userCode).",
            expiresIn: .seconds(number("expires_in", 900)),
            verificationURIIsMicrosofts: Self.isMicrosoftVerificationURI(uri, loginBase: endpoints.loginBase))
        return (prompt, Secret(deviceCode), .seconds(number("interval", 5)))
    }

    /// One poll: the device code grant.
    private func redeem(_ deviceCode: Secret) async throws(TokenError) -> Tokens {
        let url = endpoints.tokenURL(tenant: tenantID, version: .v2)
        let code = deviceCode.withValue { $0 }
        let response = try await post(
            url, [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("client_id", clientID), ("device_code", code)])
        return try Self.tokens(from: response, endpoint: url, sent: [deviceCode])
    }

    /// The tokens of a successful answer (of the device code or the refresh token grant); an
    /// error's text masks what the request `sent` (an endpoint or a proxy may echo it).
    static func tokens(from response: HTTPExchangeResponse, endpoint: String, sent: [Secret]) throws(TokenError) -> Tokens {
        let access = try TokenProvider.interpret(response, endpoint: endpoint, now: Date().timeIntervalSince1970, sent: sent)
        let body = try? JSONValue(parsing: response.body)
        guard let refresh = body?["refresh_token"]?.stringValue, !refresh.isEmpty else {
            throw TokenError(
                kind: .permanent, status: 200, message: "the sign-in brought no refresh token",
                hint: "the app registration must allow public client flows, and offline_access must be granted.")
        }
        let refreshToken = Secret(refresh)
        SecretRedaction.register(refreshToken)
        let user = body?["id_token"]?.stringValue.flatMap(AccessToken.claims(of:))?["preferred_username"]?.stringValue
        let scopes = body?["scope"]?.stringValue?.split(separator: " ").map(String.init) ?? []
        return Tokens(accessToken: access, refreshToken: refreshToken, user: user, scopes: scopes)
    }

    private func post(_ url: String, _ form: [(String, String)]) async throws(TokenError) -> HTTPExchangeResponse {
        do {
            return try await TokenEndpointForm.post(Secret(PercentEncoding.form(form)), to: url, transport: transport, deadline: requestDeadline)
        } catch {
            throw TokenError(
                kind: .transient, message: "\(url): \(error)",
                hint: "check network access to \(endpoints.loginBase) (proxy_url, HTTPS_PROXY, ca_file).")
        }
    }
}

/// A form POSTed to Entra ID's endpoints (`/token`, `/devicecode`); its body may hold secrets.
enum TokenEndpointForm {
    static func post(
        _ body: Secret, to url: String, transport: any HTTPTransport, deadline: Duration
    ) async throws(TransportError) -> HTTPExchangeResponse {
        try await transport.send(
            HTTPExchangeRequest(
                method: "POST", url: url, headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
                body: body),
            deadline: deadline)
    }
}

extension DefenderEndpoints {
    /// What a user-context token is asked for: the API's delegated permission (`Alert.Read` on
    /// WindowsDefenderATP, `SecurityAlert.Read.All` on Graph), a refresh token, the user's name.
    public var userScope: String {
        "\(resource)/\(api.delegatedPermission) offline_access openid profile"
    }

    /// `/{tenant}/oauth2/v2.0/devicecode`: where a user-context sign-in starts.
    public func deviceCodeURL(tenant: String) -> String {
        "\(loginBase)/\(tenant)/oauth2/v2.0/devicecode"
    }
}

extension AlertsAPI {
    /// The delegated permission that reads alerts in user context.
    public var delegatedPermission: String {
        switch self {
        case .mde: "Alert.Read"
        case .graph: "SecurityAlert.Read.All"
        }
    }

    /// The delegated permissions that can read alerts (read, or read and write).
    public var delegatedReadPermissions: [String] {
        switch self {
        case .mde: ["Alert.Read", "Alert.ReadWrite"]
        case .graph: ["SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"]
        }
    }
}
