import Crypto
import Foundation
import OrderedJSON
import X509
import _CryptoExtras

/// An RSA key and a self-signed certificate, and client assertions signed with them.
public struct TestCertificate: Sendable {
    public let key: _RSA.Signing.PrivateKey
    /// The certificate, PEM.
    public let pem: String
    public let der: [UInt8]
    /// The private key, PEM (PKCS#8).
    public var keyPEM: String { key.pemRepresentation }

    /// A fresh 2048-bit key (or `unsafeBits`, for tests of weak keys) and a certificate valid
    /// until `notValidAfter`.
    public init(unsafeBits: Int? = nil, notValidAfter: Date = Date().addingTimeInterval(86_400 * 365)) throws {
        key = try unsafeBits.map { try _RSA.Signing.PrivateKey(unsafeKeySize: .init(bitCount: $0)) } ?? _RSA.Signing.PrivateKey(keySize: .bits2048)
        let name = try DistinguishedName { CommonName("defender-alertd test app") }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-86_400 * 400), notValidAfter: notValidAfter,
            issuer: name, subject: name, signatureAlgorithm: .sha256WithRSAEncryption,
            extensions: Certificate.Extensions(), issuerPrivateKey: .init(key))
        pem = try certificate.serializeAsPEM().pemString
        der = try certificate.serializeAsPEM().derBytes
    }

    public enum Algorithm: Sendable { case rs256, ps256 }

    public static func base64URL(_ data: some DataProtocol) -> String {
        Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// A client assertion; `claims` overrides or adds claims (`.null` removes one).
    public func assertion(
        _ algorithm: Algorithm, audience: String, clientID: String, issuedAt: Int64,
        claims overrides: [(String, JSONValue)] = [], signer: _RSA.Signing.PrivateKey? = nil
    ) throws -> String {
        let header: JSONValue =
            switch algorithm {
            case .rs256:
                .object([("alg", .string("RS256")), ("typ", .string("JWT")), ("x5t", .string(Self.base64URL(Array(Insecure.SHA1.hash(data: der)))))])
            case .ps256:
                .object([("alg", .string("PS256")), ("typ", .string("JWT")), ("x5t#S256", .string(Self.base64URL(Array(SHA256.hash(data: der)))))])
            }
        var payload = JSONValue.object([
            ("aud", .string(audience)), ("iss", .string(clientID)), ("sub", .string(clientID)),
            ("jti", .string(UUID().uuidString)), ("nbf", .number("\(issuedAt)")), ("iat", .number("\(issuedAt)")),
            ("exp", .number("\(issuedAt + 600)")),
        ])
        for (name, value) in overrides { payload.set(name, value) }
        if case .object(let members) = payload { payload = .object(members.filter { $0.1 != .null }) }
        let signingInput = Self.base64URL(header.data) + "." + Self.base64URL(payload.data)
        let signature = try (signer ?? key).signature(
            for: Data(signingInput.utf8), padding: algorithm == .ps256 ? .PSS : .insecurePKCS1v1_5)
        return signingInput + "." + Self.base64URL(signature.rawRepresentation)
    }
}
