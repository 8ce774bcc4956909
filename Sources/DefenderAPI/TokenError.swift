/// Why no token could be had, classified so the caller knows whether waiting helps.
public struct TokenError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Permanent errors need a person (wrong secret, unknown app...); transient ones pass.
    public enum Kind: String, Sendable { case permanent, transient }

    public var kind: Kind
    /// HTTP status of the token endpoint, when it answered.
    public var status: Int?
    /// OAuth `error` (`invalid_client`...).
    public var error: String?
    /// The AADSTS code (`7000215`...).
    public var code: Int?
    /// What happened, without any secret.
    public var message: String
    /// What to do about it.
    public var hint: String?
    /// How long the endpoint asked us to wait (429/503 `Retry-After`).
    public var retryAfter: Duration?
    /// User context: a person must sign in again, with this command (`defender-alertd login
    /// --tenant contoso`); nil for every other error. Such an error lasts until someone does, so
    /// it is logged when it starts and then at most hourly (``PersistentFailureLog``).
    public var signInCommand: String?

    public init(
        kind: Kind, status: Int? = nil, error: String? = nil, code: Int? = nil, message: String, hint: String? = nil,
        retryAfter: Duration? = nil, signInCommand: String? = nil
    ) {
        self.kind = kind
        self.status = status
        self.error = error
        self.code = code
        self.message = message
        self.hint = hint
        self.retryAfter = retryAfter
        self.signInCommand = signInCommand
    }

    /// Whether a person must sign in again before any token can be had.
    public var needsSignIn: Bool { signInCommand != nil }

    public var description: String {
        var text = "token request failed (\(kind.rawValue))"
        if let status { text += ", HTTP \(status)" }
        if let code { text += ", AADSTS\(code)" }
        if let error { text += " \(error)" }
        text += ": \(message)"
        if let hint { text += " Fix: \(hint)" }
        return text
    }

    /// Hints for the AADSTS codes people meet most. Each code's meaning is that of
    /// https://learn.microsoft.com/entra/identity-platform/reference-error-codes unless said
    /// otherwise (Tests/Fixtures/README.md lists every code with its source).
    static func hint(for code: Int?, error: String?) -> String? {
        switch code {
        case 7000215:
            "the client secret is wrong. Often the secret's ID (a GUID) was pasted instead of its Value, which the portal shows only once: create a new secret under Certificates & secrets and copy its Value."
        case 7000222: "the client secret has expired: create a new one under Certificates & secrets."
        case 700016:
            "no app with this client_id exists in this tenant: check client_id and tenant_id; a multi-tenant app needs admin consent in the customer's tenant."
        case 90002:
            "the tenant does not exist in this cloud: check tenant_id and cloud (a GCC High or DoD tenant is not found on login.microsoftonline.com)."
        case 500011: "Microsoft Defender for Endpoint (WindowsDefenderATP) is not provisioned in this tenant, or the cloud is wrong."
        case 700027:
            "the assertion's signature does not verify: the certificate is not registered on the app, or the key does not match it: upload the certificate (public part) under Certificates & secrets, and check cloud and tenant."
        case 700024:
            "the client assertion is not within its valid time range: this machine's clock is wrong (check `timedatectl` and NTP); the certificate itself is fine."
        case 700023: "the client assertion's audience does not match the token endpoint: check cloud and tenant_id (and login_url, if set)."
        case 7000218: "no credential was sent: configure a client secret or a certificate."
        case 70011: "the scope is invalid for this cloud: check cloud and region."
        case 50196: "Entra ID detected a request loop; the daemon backs off and reuses its cached token."
        // Certificate errors, as Microsoft.Identity.Web lists them (CertificateAuthFailureStsErrorCodes
        // in src/Microsoft.Identity.Web.TokenAcquisition/Constants.cs of
        // github.com/AzureAD/microsoft-identity-web: 7000274 "client assertion contains an invalid
        // signature", 7000214 and 7000277 a revoked certificate, 1000502 a certificate outside its
        // validity window). Waiting does not mend them.
        case 7000274, 7000214, 7000277, 1000502:
            "Entra ID refused the certificate of the client assertion (its signature, or the certificate is revoked or outside its validity period): check the certificate registered on the app under Certificates & secrets, upload a new one if it expired or was revoked, and check certificate_file and private_key_file."
        default:
            error == "invalid_client" ? "check the client secret or certificate registered on the app." : nil
        }
    }
}
