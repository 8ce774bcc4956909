import DefenderAPI
import Foundation
import Logging
import Systemd
import Timekeeping

/// The daemon's whole configuration, validated: what `defender-alertd.toml` says, with
/// defaults filled in, relative paths resolved and secrets loaded.
public struct Configuration: Sendable, Equatable {
    /// The file this configuration was read from.
    public var path: String
    /// The `[service]` table.
    public var service: ServiceSettings
    /// Every `[[tenant]]`, in file order.
    public var tenants: [TenantConfiguration]
    /// Every `[[sink]]`, in file order.
    public var sinks: [SinkConfiguration]

    /// How many tenants send alerts to the sink named `sink`.
    public func tenantCount(sendingTo sink: String) -> Int {
        tenants.filter { tenant in sinks(for: tenant).contains { $0.name == sink } }.count
    }

    /// The sinks a tenant's alerts go to.
    public func sinks(for tenant: TenantConfiguration) -> [SinkConfiguration] {
        guard let names = tenant.sinkNames else { return sinks }
        return sinks.filter { names.contains($0.name) }
    }
}

/// `[service]`: settings of the daemon as a whole.
public struct ServiceSettings: Sendable, Equatable {
    /// Where the state database lives.
    public var stateDirectory: String
    /// Time between polls of each tenant.
    public var pollInterval: Duration
    /// The lowest level that is logged.
    public var logLevel: Logger.Level
    /// How log lines on standard error are written (outside systemd).
    public var logFormat: LogFormat = .text
    /// Queued alerts (once per sink) above which polling pauses.
    public var maxOutbox: Int
    /// Hard deadline of one poll (each completed page is kept; the next poll goes on from there).
    public var pollTimeout: Duration
    /// An extra PEM CA bundle trusted for HTTPS, besides the system's.
    public var caFile: String?
    /// An HTTP proxy for HTTPS (CONNECT), without a password; else `HTTPS_PROXY`/`NO_PROXY`
    /// from the environment.
    public var proxyURL: String?
    /// The proxy user's password, from a file or a systemd credential.
    public var proxyPassword: Secret?
    /// The key that seals the signed-in users' refresh tokens at rest, if one is configured.
    public var tokenKey: Secret? = nil
    /// The token key is a credential of the service, not available here (`login` outside the unit).
    public var tokenKeyOutsideService = false
    /// Where `/metrics` and `/healthz` are served, if anywhere.
    public var metricsListen: ListenAddress? = nil
    /// How long a sink or a tenant may keep failing before `/healthz` says unhealthy.
    public var unhealthyAfter: Duration = .seconds(600)
    /// The state in PostgreSQL, shared by a group of daemons; nil: in `stateDirectory`.
    public var stateDatabase: StateDatabaseSettings? = nil
    /// This daemon's name in the group; nil: the host name and the process id.
    public var memberName: String? = nil
}

/// Where the metrics server listens: an address and port, or a Unix socket.
public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    /// `127.0.0.1:9464`, `[::1]:9464`, `localhost:9464`, `0.0.0.0:9464` or `unix:/absolute/path`;
    /// nil otherwise. Port 0 picks a free port (the daemon logs which).
    public init?(parsing text: String) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/"), path.count > 1, path.utf8.count < 108, !path.contains("\0") else { return nil }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            guard host.contains(":"), host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
        } else {
            let ipv4 = host.split(separator: ".", omittingEmptySubsequences: false)
            let isIPv4 = ipv4.count == 4 && ipv4.allSatisfy { Int($0).map { (0...255).contains($0) } ?? false }
            guard isIPv4 || host == "localhost" else { return nil }
        }
        self = .tcp(host: host, port: port)
    }

    /// Whether only this machine can connect.
    public var isLocal: Bool {
        switch self {
        case .unix: true
        case .tcp(let host, _): host == "localhost" || host == "::1" || host.hasPrefix("127.")
        }
    }

    public var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}

/// Which alert changes are forwarded.
public enum ForwardMode: String, Sendable, CaseIterable {
    /// Each alert id once.
    case new
    /// Each `(id, lastUpdateTime)` once, labelled `created` or `updated`.
    case updates
}

/// Where a secret comes from.
public enum SecretLocation: Sendable, Equatable {
    /// A file given by path (`client_secret_file`, `private_key_file`).
    case file(String)
    /// A systemd credential: the file `$CREDENTIALS_DIRECTORY/<name>`.
    case credential(name: String, path: String)

    /// The file the secret is read from.
    public var path: String {
        switch self {
        case .file(let path), .credential(_, let path): path
        }
    }
}

/// How a tenant's app proves its identity to Entra ID.
public enum TenantCredential: Sendable, Equatable {
    /// A client secret.
    case clientSecret(Secret, from: SecretLocation)
    /// A certificate (public, PEM) and its private key (secret, PEM), checked to belong together.
    case certificate(certificateFile: String, certificatePEM: String, privateKey: Secret, from: SecretLocation)
    /// A person's sign-in (`auth = "delegated"`): the refresh token `defender-alertd login`
    /// stored in the state directory.
    case signedInUser
}

/// One `[[tenant]]`: a Defender tenant and the app registration used to read its alerts.
public struct TenantConfiguration: Sendable, Equatable {
    /// Unique name used in logs, state and `--tenant`.
    public var name: String
    /// Entra ID tenant (GUID or verified domain).
    public var tenantID: String
    /// Application (client) ID of the app registration.
    public var clientID: String
    /// The app's credential.
    public var credential: TenantCredential
    /// Which alerts API: MDE's own, or Microsoft Graph's alerts_v2.
    public var api: AlertsAPI
    /// The Microsoft cloud.
    public var cloud: Cloud
    /// Optional regional API host (commercial cloud only).
    public var region: Region?
    /// Override of the API base URL.
    public var apiURL: String?
    /// Override of the sign-in base URL.
    public var loginURL: String?
    /// Entra ID token endpoint version.
    public var tokenVersion: TokenEndpointVersion
    /// Signature algorithm of client assertions (certificate credentials).
    public var certificateAlgorithm: CertificateCredential.Algorithm
    /// Local call budget, at most the API's limit a minute (MDE 100, Graph 150).
    public var rateLimitPerMinute: Int
    /// Local call budget, at most the API's limit an hour (MDE 1,500).
    public var rateLimitPerHour: Int
    /// History fetched on the very first run.
    public var lookback: Duration
    /// Re-read window for late alerts.
    public var overlap: Duration
    /// `$top` for each request.
    public var pageSize: Int
    /// Whether to ask for `$expand=evidence`.
    public var expandEvidence: Bool
    /// What is forwarded.
    public var forward: ForwardMode
    /// Only alerts of these severities, or all when `nil`.
    public var severities: [String]?
    /// Only alerts in these statuses, or all when `nil`.
    public var statuses: [String]?
    /// Graph only: alerts of these services, or all when `nil`.
    public var serviceSources: [String]?
    /// What is read: alerts, and (Graph only) incidents.
    public var records: [RecordKind] = [.alert]
    /// The sinks this tenant's alerts go to, or all when `nil`.
    public var sinkNames: [String]?
    /// Time between reconciliation sweeps (zero: none).
    public var reconcileEvery: Duration = .seconds(3600)
    /// How far back a sweep reads (zero: no sweeps).
    public var reconcileWindow: Duration = .seconds(86400)
}

extension TenantConfiguration {
    /// What it reads: its alerts, and its incidents when `records` says so.
    public var streams: [RecordStream] { records.map { RecordStream(tenant: name, kind: $0) } }

    /// Whether reconciliation sweeps run.
    public var reconciles: Bool { reconcileEvery > .zero && reconcileWindow > overlap }

    /// Where the next poll starts: `overlap` before the watermark, or `lookback` before `now`
    /// on the very first poll (the only time the local clock decides).
    public func pollStart(watermark: Timestamp?, now: Date) -> Timestamp {
        watermark.map { $0.adding(ticks: -overlap.ticks) } ?? Timestamp(now).adding(ticks: -lookback.ticks)
    }
}

/// How a file or stdout sink writes each alert.
public enum RecordFormat: String, Sendable, CaseIterable {
    /// The alert object itself.
    case alert
    /// `{"tenant", "event", "received_at", "alert"}`.
    case envelope
    /// One line for a person: time, event, severity, title, device and id (and the tenant
    /// when several tenants share the sink).
    case summary
}

/// One `[[sink]]`: a place alerts are delivered to.
public struct SinkConfiguration: Sendable, Equatable {
    /// The kinds of sink and their own settings.
    public enum Kind: Sendable, Equatable {
        /// Native journal entries.
        case journal
        /// JSON Lines on standard output.
        case stdout(format: RecordFormat)
        /// JSON Lines appended to a file, rotated at `maxSize` bytes (0: never), keeping `maxFiles`.
        case file(path: String, format: RecordFormat, maxSize: Int64, maxFiles: Int)
        /// Messages to a syslog receiver.
        case syslog(SyslogSettings)
        /// Requests to a webhook, Splunk HEC or Elasticsearch.
        case http(HTTPSinkSettings)
    }

    /// Unique name used in logs, state and a tenant's `sinks`.
    public var name: String
    /// What kind of sink, with its settings.
    public var kind: Kind
    /// The shape records are written in (`schema`, `evidence`, `include_original`); a journal
    /// sink's is always native.
    public var shape: RecordShape

    public init(name: String, kind: Kind, shape: RecordShape = .native) {
        self.name = name
        self.kind = kind
        self.shape = shape
    }

    /// Whether the sink shows an alert's headline (severity, title, device, status, update
    /// time: a journal entry's `MESSAGE` and `PRIORITY`, a syslog PRI, a summary line, HEC's
    /// `time`, a bulk `_id`). An alert queued for such a sink has it decoded at admission and
    /// stored with it; for the others (the alert's bytes as they came) nobody pays for it. A
    /// sink that shows it without saying so here still gets it, read from the bytes.
    public var showsHeadline: Bool {
        switch kind {
        case .journal, .syslog: true
        case .stdout(let format), .file(_, let format, _, _): format == .summary
        case .http(let settings): settings.format == .splunkHEC || settings.format == .elasticsearchBulk
        }
    }
}

extension Configuration {
    /// A few lines for `check-config`: each tenant and sink with its main settings, never a secret.
    public var overview: String {
        var lines = [
            "state directory: \(service.stateDirectory), poll interval: \(ConfigDuration.format(service.pollInterval)), "
                + (service.metricsListen.map { "metrics and health at \($0)\($0.isLocal ? "" : " (not loopback: reachable from the network)")" }
                    ?? "no metrics")
        ]
        for tenant in tenants {
            let credential =
                switch tenant.credential {
                case .clientSecret(_, let location): "client secret from \(location.path)"
                case .certificate(let certificate, _, _, let location): "certificate \(certificate), key from \(location.path)"
                case .signedInUser:
                    "a signed-in user (defender-alertd login), refresh token \(service.tokenKey == nil ? "not sealed (no token_key_credential)" : "sealed")"
                }
            let sinkNames = sinks(for: tenant).map(\.name).joined(separator: ", ")
            let sweeps =
                tenant.reconciles
                ? "reconcile every \(ConfigDuration.format(tenant.reconcileEvery)) over \(ConfigDuration.format(tenant.reconcileWindow))"
                : "no reconciliation"
            lines.append(
                "tenant \(tenant.name): tenant \(tenant.tenantID), client \(tenant.clientID), \(tenant.cloud.rawValue) cloud, api \(tenant.api.rawValue), \(credential), forward \(tenant.forward.rawValue) -> \(sinkNames); \(sweeps)"
            )
        }
        for sink in sinks {
            let detail =
                switch sink.kind {
                case .journal: "journal"
                case .stdout(let format): "stdout (\(format.rawValue))"
                case .file(let path, let format, _, _): "file \(path) (\(format.rawValue))"
                case .syslog(let settings): "syslog \(settings.address) (\(settings.message.syslogProtocol.rawValue), \(settings.format.rawValue))"
                case .http(let settings):
                    "http \(settings.url) (\(settings.format.rawValue)\(settings.token == nil ? ", no token" : ", \(settings.authorization.rawValue) token"))"
                }
            lines.append("sink \(sink.name): \(detail)")
        }
        return lines.joined(separator: "\n")
    }
}

extension Configuration {
    /// The seal of each signed-in user's tenant (`auth = "delegated"`): tenant, app and the
    /// token key, for moving their refresh tokens (`state migrate`).
    public var userTokenSeals: [RefreshTokenSeal] {
        tenants.compactMap { tenant in
            guard case .signedInUser = tenant.credential else { return nil }
            return RefreshTokenSeal(tenant: tenant.name, clientID: tenant.clientID, key: service.tokenKey)
        }
    }
}
