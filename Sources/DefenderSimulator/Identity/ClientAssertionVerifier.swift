import Crypto
import Foundation
import OrderedJSON
import Timekeeping
import _CryptoExtras

/// Checks a `client_assertion` JWT the way Entra ID does: RS256 with `x5t` or PS256 with
/// `x5t#S256` naming a registered certificate, a valid signature, `aud` = the token endpoint,
/// `iss` = `sub` = the client id, `exp`/`nbf` in force, and a `jti` never seen before.
struct ClientAssertionVerifier {
    /// Why an assertion was refused: AADSTS700027 (signature), 700023 (audience), 700024 (time
    /// range), 50048 (`sub` is not `iss`), 50027 (malformed, unexpected issuer); codes and texts
    /// with their public sources in Tests/Fixtures/README.md.
    struct Rejection: Error {
        var code: EntraErrorCode
        var message: String
    }

    /// Allowed clock skew for `nbf` and `exp`.
    static let skew: Int64 = 300

    /// Checks `assertion`; `reused` tells whether its `jti` was in `seenIDs` (it is added).
    func verify(
        _ assertion: String, app: RegisteredApp, acceptedAudiences: [String], now: Timestamp,
        seenIDs: inout Set<String>, reused: inout Bool
    ) throws(Rejection) {
        let parts = assertion.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Self.base64URLDecode(parts[0]), let payloadData = Self.base64URLDecode(parts[1]),
            let signature = Self.base64URLDecode(parts[2]),
            let header = try? JSONValue(parsing: headerData), let payload = try? JSONValue(parsing: payloadData)
        else {
            throw Rejection(code: .invalidJWT, message: "JWT token is invalid or malformed.")
        }
        let signedPart = Data((parts[0] + "." + parts[1]).utf8)

        // The certificate named in the header.
        let certificate: RegisteredCertificate?
        let algorithm = header["alg"]?.stringValue
        switch algorithm {
        case "RS256":
            guard let x5t = header["x5t"]?.stringValue, let thumbprint = Self.base64URLDecode(Substring(x5t)) else {
                throw Rejection(code: .assertionSignature, message: "Client assertion failed signature validation: the RS256 header carries no x5t.")
            }
            certificate = app.certificates.first { $0.sha1Thumbprint == Array(thumbprint) }
        case "PS256":
            guard let x5t = header["x5t#S256"]?.stringValue, let thumbprint = Self.base64URLDecode(Substring(x5t)) else {
                throw Rejection(
                    code: .assertionSignature, message: "Client assertion failed signature validation: the PS256 header carries no x5t#S256.")
            }
            certificate = app.certificates.first { $0.sha256Thumbprint == Array(thumbprint) }
        default:
            throw Rejection(
                code: .assertionSignature,
                message: "Client assertion failed signature validation. Unsupported signing algorithm '\(algorithm ?? "none")'; use RS256 or PS256.")
        }
        guard let certificate else {
            throw Rejection(
                code: .assertionSignature,
                message:
                    "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '\(header["x5t"]?.stringValue ?? header["x5t#S256"]?.stringValue ?? "")', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '\(app.clientID)'.]"
            )
        }
        let rsaSignature = _RSA.Signing.RSASignature(rawRepresentation: signature)
        let digest = SHA256.hash(data: signedPart)
        let valid =
            algorithm == "PS256"
            ? certificate.publicKey.isValidSignature(rsaSignature, for: digest, padding: .PSS)
            : certificate.publicKey.isValidSignature(rsaSignature, for: digest, padding: .insecurePKCS1v1_5)
        guard valid else { throw Rejection(code: .assertionSignature, message: "Client assertion failed signature validation.") }

        // Claims.
        guard let audience = payload["aud"]?.stringValue, acceptedAudiences.contains(audience) else {
            throw Rejection(
                code: .assertionAudienceMismatch,
                message:
                    "Client assertion audience claim does not match Realm issuer. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
            )
        }
        let issuer = payload["iss"]?.stringValue?.lowercased()
        guard issuer == payload["sub"]?.stringValue?.lowercased() else {
            throw Rejection(code: .subjectMismatchesIssuer, message: "Subject mismatches Issuer claim in the client assertion.")
        }
        guard issuer == app.clientID else {
            throw Rejection(
                code: .invalidJWT,
                message: "JWT token is invalid or malformed: unexpected issuer (the client assertion's iss and sub must be the client id).")
        }
        let seconds = now.ticks / 10_000_000
        guard let exp = Self.integer(payload["exp"]) else {
            throw Rejection(code: .invalidJWT, message: "JWT token is invalid or malformed: no integer 'exp' claim.")
        }
        guard exp + Self.skew > seconds else {
            throw Rejection(
                code: .assertionTimeRange,
                message: "Client assertion is not within its valid time range. Current time: \(now), expiry time of assertion \(exp).")
        }
        if let nbf = Self.integer(payload["nbf"]), nbf - Self.skew > seconds {
            throw Rejection(
                code: .assertionTimeRange,
                message: "Client assertion is not within its valid time range. Current time: \(now), assertion valid from \(nbf).")
        }
        guard let jti = payload["jti"]?.stringValue, !jti.isEmpty else {
            throw Rejection(code: .invalidJWT, message: "JWT token is invalid or malformed: no 'jti' claim.")
        }
        // How Entra ID answers a `jti` it has seen is not documented (the certificate-credentials
        // page asks only for a unique GUID): a reused one is accepted and counted
        // (``SimulatorCounters/clientAssertionsReused``), so a test can check that the client
        // never reuses one, and no error code is invented for it.
        if !seenIDs.insert(jti).inserted { reused = true }
    }

    /// Whole seconds only: Entra's claims are integers (fractional values are refused).
    private static func integer(_ value: JSONValue?) -> Int64? {
        guard case .number(let text)? = value else { return nil }
        return Int64(text)
    }

    static func base64URLDecode(_ text: Substring) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
