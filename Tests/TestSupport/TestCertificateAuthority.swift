import Crypto
import Foundation
import SwiftASN1
import X509

/// A throwaway certificate authority for TLS tests: its certificate, and server certificates
/// it signs (for chosen names, optionally already expired), all as PEM.
public struct TestCertificateAuthority: Sendable {
    private let key: P256.Signing.PrivateKey
    private let name: DistinguishedName
    /// The CA certificate, PEM.
    public let pem: String

    public init(commonName: String = "defender-alertd test CA") throws {
        key = P256.Signing.PrivateKey()
        name = try DistinguishedName { CommonName(commonName) }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(86_400 * 30),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(key))
        pem = try certificate.serializeAsPEM().pemString
    }

    /// A server certificate for `dnsNames` and `ipAddresses`, valid now unless `expired`;
    /// returns (certificate PEM, private key PEM).
    public func serverCertificate(
        dnsNames: [String] = ["localhost"], ipAddresses: [String] = ["127.0.0.1"],
        expired: Bool = false
    ) throws -> (certificate: String, key: String) {
        let serverKey = P256.Signing.PrivateKey()
        let now = Date()
        let (notBefore, notAfter) =
            expired
            ? (now.addingTimeInterval(-86_400 * 10), now.addingTimeInterval(-86_400))
            : (now.addingTimeInterval(-3600), now.addingTimeInterval(86_400 * 30))
        var names: [GeneralName] = dnsNames.map { .dnsName($0) }
        for address in ipAddresses {
            var bytes = [UInt8](repeating: 0, count: 4)
            inet_pton(AF_INET, address, &bytes)
            names.append(.ipAddress(ASN1OctetString(contentBytes: bytes[...])))
        }
        let subject = try DistinguishedName { CommonName(dnsNames.first ?? "server") }
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(serverKey.publicKey),
            notValidBefore: notBefore, notValidAfter: notAfter,
            issuer: name, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(names)
            },
            issuerPrivateKey: .init(key))
        return (try certificate.serializeAsPEM().pemString, serverKey.pemRepresentation)
    }
}
