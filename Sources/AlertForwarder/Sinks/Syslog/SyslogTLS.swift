import DefenderAPI
import NIOSSL

/// TLS for `tls://` (and `relp://` when TLS settings are given): the receiver's certificate is
/// always verified, against the system's trust store and `caFile`, for `serverName` (default:
/// the host of the address); a client certificate when the receiver asks for one.
public struct SyslogTLS: Sendable, Equatable {
    public var caFile: String?
    public var clientCertificateFile: String?
    /// The client certificate's private key (PEM), read at load time under the secret rules.
    public var clientKey: Secret?
    public var serverName: String?

    public init(caFile: String? = nil, clientCertificateFile: String? = nil, clientKey: Secret? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.clientCertificateFile = clientCertificateFile
        self.clientKey = clientKey
        self.serverName = serverName
    }

    /// The client context; a file that cannot be used is a fault a person must fix.
    func context() throws(SinkError) -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .fullVerification
        configuration.minimumTLSVersion = .tlsv12
        do {
            if let caFile { configuration.additionalTrustRoots = [.file(caFile)] }
            if let clientCertificateFile, let clientKey {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(clientCertificateFile).map { .certificate($0) }
                configuration.privateKey = .privateKey(try clientKey.withValue { try NIOSSLPrivateKey(bytes: Array($0.utf8), format: .pem) })
            }
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw SinkError("the TLS settings cannot be used: \(error)", kind: .needsOperator)
        }
    }
}
