import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// A tenant the simulated Entra ID knows.
public struct SimulatedTenant: Sendable, Equatable {
    /// The tenant id (GUID, lower-case).
    public var id: String
    /// Verified domains, e.g. `contoso.onmicrosoft.com`.
    public var domains: [String]
    /// The directory's display name (used in error messages).
    public var displayName: String

    public init(id: String, domains: [String] = [], displayName: String = "Contoso") {
        self.id = id.lowercased()
        self.domains = domains.map { $0.lowercased() }
        self.displayName = displayName
    }

    func answers(to name: String) -> Bool {
        let name = name.lowercased()
        return name == id || domains.contains(name)
    }
}

/// A certificate registered on an app (its `keyCredentials`).
public struct RegisteredCertificate: Sendable {
    /// SHA-1 of the DER certificate (`x5t`).
    public let sha1Thumbprint: [UInt8]
    /// SHA-256 of the DER certificate (`x5t#S256`).
    public let sha256Thumbprint: [UInt8]
    let publicKey: _RSA.Signing.PublicKey

    /// Registers a PEM certificate with an RSA key (Entra accepts only RSA).
    public init(pem: String) throws {
        let certificate = try Certificate(pemEncoded: pem)
        guard let key = _RSA.Signing.PublicKey(certificate.publicKey) else {
            throw SimulatorSetupError("the certificate's key is not RSA; Entra ID accepts only RSA keys for client assertions")
        }
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        let der = serializer.serializedBytes
        sha1Thumbprint = Array(Insecure.SHA1.hash(data: der))
        sha256Thumbprint = Array(SHA256.hash(data: der))
        publicKey = key
    }
}

/// An app registration with its credentials and consented application permissions.
public struct RegisteredApp: Sendable {
    public var tenantID: String
    public var clientID: String
    public var displayName: String
    public var secrets: [String]
    public var certificates: [RegisteredCertificate]
    /// Application roles granted on WindowsDefenderATP (e.g. `Alert.Read.All`).
    public var roles: [String]
    /// Application roles granted on Microsoft Graph.
    public var graphRoles: [String]
    /// A public client ("Allow public client flows"): it signs users in with the device code
    /// flow and has no secret to prove at the token endpoint.
    public var isPublicClient = false
    /// Delegated permissions consented on WindowsDefenderATP (`Alert.Read`) and on Microsoft
    /// Graph (`SecurityAlert.Read.All`, `SecurityIncident.Read.All`), for user context.
    public var delegatedScopes = ["Alert.Read"]
    public var graphDelegatedScopes = ["SecurityAlert.Read.All", "SecurityIncident.Read.All"]

    public init(
        tenantID: String, clientID: String, displayName: String = "contoso-mde-forwarder", secrets: [String] = [],
        certificates: [RegisteredCertificate] = [], roles: [String] = ["Alert.Read.All"],
        graphRoles: [String] = ["SecurityAlert.Read.All", "SecurityIncident.Read.All"]
    ) {
        self.tenantID = tenantID.lowercased()
        self.clientID = clientID.lowercased()
        self.displayName = displayName
        self.secrets = secrets
        self.certificates = certificates
        self.roles = roles
        self.graphRoles = graphRoles
    }
}

/// A setup mistake (bad certificate, unknown tenant for an app...).
public struct SimulatorSetupError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The resources the simulated token endpoint issues tokens for.
enum Resource {
    /// The audience of MDE API tokens, kept even for the newer API host (`docs/microsoft-apis.md` §1.4).
    static let defender = "https://api.securitycenter.microsoft.com"
    static let graph = "https://graph.microsoft.com"
    /// Other names under which WindowsDefenderATP is requested; tokens still carry `defender`
    /// as audience, except the newer host, which gets its own (and a 403 from the API).
    static let defenderAliases = [
        "https://api.securitycenter.microsoft.com", "https://securitycenter.onmicrosoft.com/windowsatpservice",
        "https://api.securitycenter.windows.com", "https://api.security.microsoft.com",
    ]

    /// The audience for a requested resource, or `nil` when the resource is unknown.
    static func audience(for resource: String) -> String? {
        let trimmed = resource.hasSuffix("/") ? String(resource.dropLast()) : resource
        if trimmed == graph { return graph }
        if trimmed == "https://api.security.microsoft.com" { return trimmed }
        return defenderAliases.contains(trimmed) ? defender : nil
    }
}
