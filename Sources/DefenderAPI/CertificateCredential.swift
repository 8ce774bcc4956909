import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// Why a certificate credential cannot be used; each message says what to fix.
public struct CredentialError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// How the app proves its identity to Entra ID.
public enum ClientCredential: Sendable {
    case secret(Secret)
    case certificate(CertificateCredential)
    /// User context: a public client redeeming the refresh token a person's sign-in left
    /// (`defender-alertd login`); each answer's rotated token replaces it.
    case refreshToken(any RefreshTokenKeeper)
}

/// Where a user-context refresh token lives: read before each renewal, replaced by the one
/// Entra ID rotates to.
public protocol RefreshTokenKeeper: Sendable {
    /// The stored token, or nil when nobody signed in.
    func load() async throws -> Secret?
    /// Replaces the stored token, atomically.
    func save(_ token: Secret) async throws
    /// What a person runs to sign in again (`defender-alertd login --tenant contoso`).
    var signInCommand: String { get }
}

/// A certificate and its RSA private key, producing client assertions (JWTs) as Entra ID's
/// certificate-credentials documentation describes: PS256 with `x5t#S256` (default) or RS256
/// with `x5t`, `aud` = the token endpoint, `iss` = `sub` = client id, a fresh `jti`, and a
/// five-minute lifetime.
public struct CertificateCredential: Sendable {
    /// Signature algorithm of the assertion.
    public enum Algorithm: String, Sendable, CaseIterable {
        case ps256 = "PS256"
        case rs256 = "RS256"
    }

    private let key: _RSA.Signing.PrivateKey
    private let sha1Thumbprint: [UInt8]
    private let sha256Thumbprint: [UInt8]
    public let algorithm: Algorithm
    /// When the certificate stops being valid.
    public let notValidAfter: Date
    /// The certificate's subject, for messages.
    public let subject: String

    /// Loads and checks the pair: an RSA key of at least 2048 bits that matches the certificate,
    /// and a certificate that is valid now.
    public init(certificatePEM: String, privateKeyPEM: Secret, algorithm: Algorithm = .ps256, now: Date = Date()) throws(CredentialError) {
        let certificate: Certificate
        do {
            certificate = try Certificate(pemEncoded: certificatePEM)
        } catch {
            if "\(error)".contains("incorrectParameterSize") {
                throw CredentialError("the certificate's RSA key is shorter than 2048 bits; Entra ID and this daemon require at least 2048")
            }
            throw CredentialError("the certificate is not a PEM X.509 certificate (\(error))")
        }
        let key: _RSA.Signing.PrivateKey
        do {
            key = try privateKeyPEM.withValue { try _RSA.Signing.PrivateKey(unsafePEMRepresentation: $0) }
        } catch {
            // The error of the PEM parser never contains the key; still, say it in our words.
            let encrypted = privateKeyPEM.withValue { $0.contains("ENCRYPTED") }
            throw CredentialError(
                encrypted
                    ? "the private key is encrypted; store it unencrypted (openssl pkey -in key.pem -out plain.pem) with mode 0600, or as a systemd credential"
                    : "the private key is not an RSA key in PEM (PKCS#1 or PKCS#8); Entra ID accepts only RSA keys for client assertions")
        }
        guard key.keySizeInBits >= 2048 else {
            throw CredentialError("the RSA key has \(key.keySizeInBits) bits; Entra ID and this daemon require at least 2048")
        }
        guard let certificateKey = _RSA.Signing.PublicKey(certificate.publicKey),
            certificateKey.derRepresentation == key.publicKey.derRepresentation
        else {
            throw CredentialError("the private key does not belong to the certificate (\(certificate.subject))")
        }
        guard certificate.notValidAfter > now else {
            throw CredentialError(
                "the certificate (\(certificate.subject)) expired on \(certificate.notValidAfter); Entra ID refuses assertions signed with it (AADSTS700027)"
            )
        }
        var serializer = DER.Serializer()
        do { try serializer.serialize(certificate) } catch { throw CredentialError("the certificate cannot be encoded: \(error)") }
        let der = serializer.serializedBytes
        self.key = key
        sha1Thumbprint = Array(Insecure.SHA1.hash(data: der))
        sha256Thumbprint = Array(SHA256.hash(data: der))
        self.algorithm = algorithm
        notValidAfter = certificate.notValidAfter
        subject = String(describing: certificate.subject)
    }

    /// A signed client assertion for the token endpoint `audience`.
    public func assertion(audience: String, clientID: String, now: Date) throws(CredentialError) -> Secret {
        let issuedAt = Int64(now.timeIntervalSince1970.rounded(.down))
        let header: String =
            switch algorithm {
            case .ps256: #"{"alg":"PS256","typ":"JWT","x5t#S256":"\#(Base64URL.encode(sha256Thumbprint))"}"#
            case .rs256: #"{"alg":"RS256","typ":"JWT","x5t":"\#(Base64URL.encode(sha1Thumbprint))"}"#
            }
        // Whole seconds: Entra refuses fractional iat/nbf/exp.
        let claims =
            #"{"aud":"\#(Self.escape(audience))","iss":"\#(Self.escape(clientID))","sub":"\#(Self.escape(clientID))","jti":"\#(UUID().uuidString.lowercased())","nbf":\#(issuedAt),"iat":\#(issuedAt),"exp":\#(issuedAt + 300)}"#
        let signingInput = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(claims.utf8))
        do {
            let signature = try key.signature(for: Data(signingInput.utf8), padding: algorithm == .ps256 ? .PSS : .insecurePKCS1v1_5)
            return Secret(signingInput + "." + Base64URL.encode(Array(signature.rawRepresentation)))
        } catch {
            throw CredentialError("signing the client assertion failed: \(error)")
        }
    }

    private static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }
}

/// Base64url without padding (RFC 7515).
enum Base64URL {
    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: Substring) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
