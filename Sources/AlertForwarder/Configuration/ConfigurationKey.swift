import DefenderAPI
import Logging
import Systemd
import Timekeeping

/// One key of `defender-alertd.toml`: the single definition that the loader validates against
/// (type, range, allowed values, default) and that the configuration reference, the
/// `defender-alertd.toml(5)` man page and the README's tables are generated from.
///
/// ``TableReader`` only reads keys given as a `ConfigurationKey`, so the loader cannot accept
/// a key this table does not describe, nor use a default other than the documented one.
public struct ConfigurationKey: Sendable, Hashable {
    /// The table a key belongs to.
    public enum Table: String, Sendable, CaseIterable {
        case service
        case tenant
        case sink

        /// How the table is written in TOML.
        public var header: String { self == .service ? "[service]" : "[[\(rawValue)]]" }
    }

    /// What a key's value is, with the limits the loader enforces.
    public enum Kind: Sendable, Hashable {
        case string
        /// A file or directory; relative paths are relative to the configuration file.
        case path
        /// A duration string (`"30s"`), at least `minimum`.
        case duration(minimum: Duration)
        case integer(ClosedRange<Int>)
        case boolean
        /// A size string (`"100MB"`).
        case size
        /// One of `values`, case-insensitive.
        case choice([String])
        /// A non-empty array of distinct strings, each one of `values` when given.
        case list([String]?)
        /// A table of string values (an inline table such as `{ "X-Source" = "mde" }`).
        case stringTable

        /// The type as the reference names it.
        public var typeName: String {
            switch self {
            case .string: "string"
            case .path: "path"
            case .duration: "duration"
            case .integer: "integer"
            case .boolean: "boolean"
            case .size: "size"
            case .choice: "string"
            case .list: "array of strings"
            case .stringTable: "table of strings"
            }
        }
    }

    /// A default as written in TOML.
    public enum DefaultValue: Sendable, Hashable {
        case string(String)
        case integer(Int)
        case boolean(Bool)

        /// The TOML literal (`"60s"`, `100000`, `true`).
        public var toml: String {
            switch self {
            case .string(let text): "\"\(text)\""
            case .integer(let value): String(value)
            case .boolean(let value): String(value)
            }
        }
    }

    public let table: Table
    public let name: String
    public let kind: Kind
    /// The value used when the key is absent, if it is a fixed one.
    public let defaultValue: DefaultValue?
    /// How the value is found when the key is absent and there is no fixed default
    /// (`"every sink"`); `nil` with no `defaultValue` means "none".
    public let defaultDescription: String?
    public let required: Bool
    /// Sink keys only: the sink types the key applies to (empty: every type).
    public let sinkTypes: [String]
    /// What the key does; `code` in backticks.
    public let meaning: String

    init(
        _ table: Table, _ name: String, _ kind: Kind, default defaultValue: DefaultValue? = nil, defaultDescription: String? = nil,
        required: Bool = false, sinkTypes: [String] = [], _ meaning: String
    ) {
        self.table = table
        self.name = name
        self.kind = kind
        self.defaultValue = defaultValue
        self.defaultDescription = defaultDescription
        self.required = required
        self.sinkTypes = sinkTypes
        self.meaning = meaning
    }

    /// The default column of the reference: the TOML literal, a description, `required` or `none`.
    public var defaultText: String {
        if required { return "required" }
        if let defaultValue { return defaultValue.toml }
        return defaultDescription ?? "none"
    }

    /// The allowed values of a choice or of a list's elements.
    public var values: [String]? {
        switch kind {
        case .choice(let values): values
        case .list(let values): values
        default: nil
        }
    }

    /// The default duration (the loader's fallback), parsed from the documented text.
    var defaultDuration: Duration {
        guard case .string(let text)? = defaultValue, let duration = ConfigDuration.parse(text) else {
            preconditionFailure("\(name) has no duration default")
        }
        return duration
    }
}

extension ConfigurationKey {
    /// The sink types that exist in this version.
    public static let sinkTypeNames = ["journal", "stdout", "file", "syslog", "http"]

    /// Every key, in the order the reference documents them.
    public static let all: [ConfigurationKey] = Service.all + Tenant.all + Sink.all

    /// The keys of `[service]`.
    public enum Service {
        public static let stateDirectory = ConfigurationKey(
            .service, "state_directory", .path, defaultDescription: "`$STATE_DIRECTORY`, else `./state`",
            "where the state lives: `state.sqlite` (watermarks, dedup keys, each sink's place in the outbox) and `outbox/` (the queued alerts)")
        public static let pollInterval = ConfigurationKey(
            .service, "poll_interval", .duration(minimum: .milliseconds(1)), default: .string("60s"),
            "time between polls of each tenant; any positive duration (the rate budget keeps calls within the API limits)")
        public static let logLevel = ConfigurationKey(
            .service, "log_level", .choice(Logger.Level.allCases.map(\.rawValue)), default: .string("info"),
            "the lowest level logged: `trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`; a reload applies a change at once")
        public static let logFormat = ConfigurationKey(
            .service, "log_format", .choice(LogFormat.allCases.map(\.rawValue)), default: .string("text"),
            "the daemon's own log lines on standard error, where they go outside systemd (a container, a shell): `text` (plain lines) or `json` (one JSON object a line, the journal's field names as keys, for Fluent Bit, Vector or the kubelet); under systemd they are journal entries whatever this says; a reload applies a change at once"
        )
        public static let maxOutbox = ConfigurationKey(
            .service, "max_outbox", .integer(1...100_000_000), default: .integer(100_000),
            "queued alerts (counted once per sink waiting for them) above which polling pauses until the sinks catch up; nothing is dropped")
        public static let pollTimeout = ConfigurationKey(
            .service, "poll_timeout", .duration(minimum: .seconds(1)), default: .string("10m"),
            "hard deadline of one poll; pages read before it are kept and the next poll goes on")
        public static let caFile = ConfigurationKey(
            .service, "ca_file", .path,
            "extra PEM CA bundle trusted for HTTPS besides the system's (checked at load); verification is always on")
        public static let proxyURL = ConfigurationKey(
            .service, "proxy_url", .string, defaultDescription: "`HTTPS_PROXY`/`NO_PROXY`",
            "HTTP proxy for HTTPS (CONNECT), `http://[user@]host:port`; a password never goes here (it is refused), but in `proxy_password_file` or `proxy_password_credential`"
        )
        public static let proxyPasswordFile = ConfigurationKey(
            .service, "proxy_password_file", .path,
            "the proxy user's password in a file, mode `0600` or `0400`, owned by root or the daemon's user")
        public static let proxyPasswordCredential = ConfigurationKey(
            .service, "proxy_password_credential", .string,
            "or the proxy password as a systemd credential name")

        public static let tokenKeyFile = ConfigurationKey(
            .service, "token_key_file", .path,
            "`auth = \"delegated\"`: a key (any text, e.g. 32 random bytes in base64) in a file with the secret file rules, with which the signed-in users' refresh tokens are sealed (AES-256-GCM) in the state directory, or in PostgreSQL (required there)"
        )
        public static let tokenKeyCredential = ConfigurationKey(
            .service, "token_key_credential", .string,
            "or that key as a systemd credential name (`LoadCredentialEncrypted=` with a file from `systemd-creds encrypt`)")
        public static let metricsListen = ConfigurationKey(
            .service, "metrics_listen", .string, defaultDescription: "off",
            "serve Prometheus metrics at `/metrics` and health at `/healthz` over HTTP, with a container's probes at `/healthz/live` (fails only when a part is stalled) and `/healthz/ready` (also while the state cannot be used): `127.0.0.1:9464`, `[::1]:9464`, `0.0.0.0:9464` (in a container), or `unix:/run/defender-alertd/metrics.sock`; an address other than loopback shows them to the network, without authentication"
        )
        public static let unhealthyAfter = ConfigurationKey(
            .service, "unhealthy_after", .duration(minimum: .seconds(1)), default: .string("10m"),
            "how long a sink may keep failing, or a tenant's polls keep failing, before `/healthz` answers 503 (a stalled component makes it 503 at once)"
        )

        public static let stateDatabase = ConfigurationKey(
            .service, "state_database", .string, defaultDescription: "none: the state is in `state_directory`",
            "the state in PostgreSQL instead, shared by a group of daemons with the same configuration (see [Running a group](#running-a-group)): `postgresql://USER@HOST:PORT/DB`, with `?sslmode=` as libpq names it (`disable`, `require`, `verify-ca`, `verify-full`; default `verify-full`, `disable` on loopback); never a password"
        )
        public static let stateDatabaseCAFile = ConfigurationKey(
            .service, "state_database_ca_file", .path, defaultDescription: "`ca_file`, else the system's",
            "the PEM CA bundle that signed the PostgreSQL server's certificate")
        public static let stateDatabasePasswordFile = ConfigurationKey(
            .service, "state_database_password_file", .path,
            "the PostgreSQL user's password in a file, mode `0600` or `0400`, owned by root or the daemon's user")
        public static let stateDatabasePasswordCredential = ConfigurationKey(
            .service, "state_database_password_credential", .string,
            "or that password as a systemd credential name")
        public static let leaseTTL = ConfigurationKey(
            .service, "lease_ttl", .duration(minimum: .seconds(3)), default: .string("30s"),
            "with `state_database`: how long a daemon's hold on a tenant lasts unless renewed (every third of it); a daemon killed, stopped or cut off loses its tenants to the others within this time"
        )

        public static let memberName = ConfigurationKey(
            .service, "member_name", .string, defaultDescription: "the host name and the process id",
            "with `state_database`: this daemon's name in the group (its leases, logs, `User-Agent`); unique in the group: a second daemon with a name in use is refused until the first stops"
        )

        public static let all = [
            stateDirectory, pollInterval, logLevel, logFormat, maxOutbox, pollTimeout, caFile, proxyURL, proxyPasswordFile,
            proxyPasswordCredential, tokenKeyFile, tokenKeyCredential, metricsListen, unhealthyAfter,
            stateDatabase, stateDatabaseCAFile, stateDatabasePasswordFile, stateDatabasePasswordCredential, leaseTTL, memberName,
        ]
    }

    /// The keys of each `[[tenant]]`.
    public enum Tenant {
        public static let name = ConfigurationKey(
            .tenant, "name", .string, required: true,
            "unique; letters, digits, `-` and `_` (at most 64); used in logs (`DEFENDER_TENANT=`) and `--tenant`")
        public static let tenantID = ConfigurationKey(
            .tenant, "tenant_id", .string, required: true,
            "directory (tenant) ID: a GUID or a verified domain such as `contoso.onmicrosoft.com`")
        public static let clientID = ConfigurationKey(
            .tenant, "client_id", .string, required: true, "application (client) ID of the app registration, a GUID")
        public static let auth = ConfigurationKey(
            .tenant, "auth", .choice(["application", "delegated"]), default: .string("application"),
            "`application`: the app's own permissions (client credentials: a secret or a certificate); `delegated`: a person's, signed in once with `defender-alertd login --tenant NAME` (device code flow; a public client app with the delegated permission `Alert.Read`, or `SecurityAlert.Read.All` on Graph; no secret or certificate)"
        )
        public static let clientSecretFile = ConfigurationKey(
            .tenant, "client_secret_file", .path,
            "credential: a file holding the client secret, mode `0600` or `0400`, owned by root or the daemon's user")
        public static let clientSecretCredential = ConfigurationKey(
            .tenant, "client_secret_credential", .string,
            "credential: a systemd credential name holding the client secret (`$CREDENTIALS_DIRECTORY/NAME`)")
        public static let certificateFile = ConfigurationKey(
            .tenant, "certificate_file", .path,
            "credential: a PEM certificate uploaded to the app registration, with `private_key_file` or `private_key_credential`")
        public static let privateKeyFile = ConfigurationKey(
            .tenant, "private_key_file", .path, "the certificate's RSA private key (PEM, at least 2048 bits), a file with the secret file rules")
        public static let privateKeyCredential = ConfigurationKey(
            .tenant, "private_key_credential", .string, "or the private key as a systemd credential name")
        public static let certificateAlgorithm = ConfigurationKey(
            .tenant, "certificate_algorithm", .choice(CertificateCredential.Algorithm.allCases.map(\.rawValue)), default: .string("PS256"),
            "client assertion signature: `PS256` (with `x5t#S256`) or `RS256` (with `x5t`)")
        public static let api = ConfigurationKey(
            .tenant, "api", .choice(AlertsAPI.allCases.map(\.rawValue)), default: .string("mde"),
            "where alerts come from: `mde`, Defender for Endpoint's alerts API (Endpoint alerts; permission `Alert.Read.All` on WindowsDefenderATP), or `graph`, Microsoft Graph `security/alerts_v2` (every Defender XDR alert; permission `SecurityAlert.Read.All` on Microsoft Graph)"
        )
        public static let cloud = ConfigurationKey(
            .tenant, "cloud", .choice(Cloud.allCases.map(\.rawValue)), default: .string("commercial"),
            "the Microsoft cloud: `commercial`, `gcc`, `gcc-high`, `dod`")
        public static let region = ConfigurationKey(
            .tenant, "region", .choice(Region.allCases.map(\.rawValue)),
            "regional API host, commercial cloud and `api = \"mde\"` only: `us`, `eu`, `uk`, `au`, `swa`, `ina`, `aea`")
        public static let apiURL = ConfigurationKey(
            .tenant, "api_url", .string, "override of the API base URL; `http://` only for loopback addresses")
        public static let loginURL = ConfigurationKey(
            .tenant, "login_url", .string, "override of the sign-in base URL; `http://` only for loopback addresses")
        public static let tokenVersion = ConfigurationKey(
            .tenant, "token_version", .choice(TokenEndpointVersion.allCases.map(\.rawValue)), default: .string("v2"),
            "Entra ID token endpoint: `v2` (`scope=<resource>/.default`) or `v1` (`resource=`)")
        public static let rateLimitPerMinute = ConfigurationKey(
            .tenant, "rate_limit_per_minute", .integer(1...150), defaultDescription: "100 (`mde`), 150 (`graph`)",
            "local budget of API calls a minute for this app and tenant (at most the API's limit: MDE 100, Graph 150)")
        public static let rateLimitPerHour = ConfigurationKey(
            .tenant, "rate_limit_per_hour", .integer(1...9000), defaultDescription: "1500 (`mde`), 9000 (`graph`)",
            "local budget of API calls an hour (at most MDE's 1,500; Graph has no hourly limit, so 150 a minute for an hour)")
        public static let lookback = ConfigurationKey(
            .tenant, "lookback", .duration(minimum: .seconds(1)), default: .string("24h"), "history fetched on the very first run")
        public static let overlap = ConfigurationKey(
            .tenant, "overlap", .duration(minimum: .zero), default: .string("15m"),
            "each poll re-reads this much before the last alert seen, for alerts that become visible late")
        public static let pageSize = ConfigurationKey(
            .tenant, "page_size", .integer(1...10_000), default: .integer(1000), "`$top` of each request (at most 10,000 for MDE, 1,000 for Graph)")
        public static let expandEvidence = ConfigurationKey(
            .tenant, "expand_evidence", .boolean, default: .boolean(true),
            "`api = \"mde\"`: request the alerts' evidence (`$expand=evidence`; Graph always sends it)")
        public static let forward = ConfigurationKey(
            .tenant, "forward", .choice(ForwardMode.allCases.map(\.rawValue)), default: .string("new"),
            "`new`: each alert once; `updates`: each change (new `lastUpdateTime`, Graph `lastUpdateDateTime`) once, labelled `created` or `updated`")
        public static let severity = ConfigurationKey(
            .tenant, "severity", .list(nil), defaultDescription: "all",
            "only these severities, in the API's words: MDE `UnSpecified`, `Informational`, `Low`, `Medium`, `High`; Graph `unknown`, `informational`, `low`, `medium`, `high`"
        )
        public static let status = ConfigurationKey(
            .tenant, "status", .list(nil), defaultDescription: "all",
            "only these statuses: MDE `Unknown`, `New`, `InProgress`, `Resolved`; Graph `unknown`, `new`, `inProgress`, `resolved`")
        public static let serviceSource = ConfigurationKey(
            .tenant, "service_source", .list(AlertsAPI.graphServiceSources), defaultDescription: "all",
            "`api = \"graph\"` only: alerts of these Defender XDR services, e.g. `[\"microsoftDefenderForEndpoint\", \"microsoftDefenderForOffice365\"]`"
        )
        public static let records = ConfigurationKey(
            .tenant, "records", .list(RecordKind.allCases.map(\.plural)), defaultDescription: "`[\"alerts\"]`",
            "what is read: `alerts`, and with `api = \"graph\"` `incidents` (Microsoft Graph `security/incidents`, each incident with its alerts; permission `SecurityIncident.Read.All`); each has its own watermark and dedup keys; `severity`, `status` and `service_source` filter the alerts"
        )
        public static let sinks = ConfigurationKey(
            .tenant, "sinks", .list(nil), defaultDescription: "every sink", "names of the `[[sink]]`s this tenant's alerts go to")
        public static let reconcileEvery = ConfigurationKey(
            .tenant, "reconcile_every", .duration(minimum: .zero), default: .string("1h"),
            "how often a reconciliation sweep re-reads `reconcile_window` for alerts that became visible later than `overlap` (at low priority in the call budget); `\"0\"` turns sweeps off"
        )
        public static let reconcileWindow = ConfigurationKey(
            .tenant, "reconcile_window", .duration(minimum: .zero), default: .string("24h"),
            "how far back a sweep reads, up to `overlap` before the watermark (what the polls no longer re-read); longer than `overlap`; `\"0\"` turns sweeps off"
        )

        public static let all = [
            name, tenantID, clientID, auth, clientSecretFile, clientSecretCredential, certificateFile, privateKeyFile, privateKeyCredential,
            certificateAlgorithm, api, cloud, region, apiURL, loginURL, tokenVersion, rateLimitPerMinute, rateLimitPerHour, lookback,
            overlap, pageSize, expandEvidence, forward, severity, status, serviceSource, records, sinks, reconcileEvery, reconcileWindow,
        ]
    }

    /// The keys of each `[[sink]]`.
    public enum Sink {
        public static let name = ConfigurationKey(
            .sink, "name", .string, required: true, "unique; letters, digits, `-` and `_`; used in logs (`DEFENDER_SINK=`) and a tenant's `sinks`")
        public static let type = ConfigurationKey(
            .sink, "type", .choice(sinkTypeNames), required: true,
            "`journal`, `stdout`, `file`, `syslog` or `http`")
        public static let path = ConfigurationKey(
            .sink, "path", .path, required: true, sinkTypes: ["file"],
            "the file, created `0640`; every batch is `fsync`'d before it counts as delivered; SIGHUP reopens it (logrotate); refused inside the state directory, on the configuration or a secret file, or shared with another sink (after resolving `..` and symbolic links)"
        )
        public static let format = ConfigurationKey(
            .sink, "format", .choice(RecordFormat.allCases.map(\.rawValue)), default: .string("alert"), sinkTypes: ["stdout", "file"],
            "`alert`: each line is the alert exactly as Defender returned it; `envelope`: `{\"tenant\", \"kind\", \"event\", \"received_at\", \"alert\"}` (an incident: `\"kind\": \"incident\"` and `\"incident\"`); `summary`: one line for a person (time, event, severity, title, device, id)"
        )
        public static let maxSize = ConfigurationKey(
            .sink, "max_size", .size, default: .string("100MB"), sinkTypes: ["file"],
            "rotate when the file would pass this size (B, KB, MB, GB, KiB, MiB, GiB; `\"0\"`: never)")
        public static let maxFiles = ConfigurationKey(
            .sink, "max_files", .integer(0...1000), default: .integer(5), sinkTypes: ["file"],
            "rotated files kept (`alerts.jsonl.1` is the newest)")

        public static let address = ConfigurationKey(
            .sink, "address", .string, required: true, sinkTypes: ["syslog"],
            "the receiver: `udp://`, `tcp://`, `tls://` or `relp://` then `host[:port]` (IPv6 in `[...]`); default ports 514, 601, 6514, 2514")
        public static let syslogProtocol = ConfigurationKey(
            .sink, "protocol", .choice(SyslogProtocol.allCases.map(\.rawValue)), default: .string("rfc5424"), sinkTypes: ["syslog"],
            "`rfc5424` (RFC 3339 time in the alert's own zone, structured data `[defender@N alertId tenant severity event]`) or `rfc3164` for old receivers (UTC time)"
        )
        public static let syslogFormat = ConfigurationKey(
            .sink, "format", .choice(SyslogBodyFormat.allCases.map(\.rawValue)), default: .string("json"), sinkTypes: ["syslog"],
            "the message text: `json` (the alert as Defender returned it) or `cef` (a CEF 0 line, see Sending to a SIEM)")
        public static let cefAlertJSON = ConfigurationKey(
            .sink, "cef_alert_json", .boolean, default: .boolean(false), sinkTypes: ["syslog"],
            "`format = \"cef\"` only: also put the whole alert JSON in `cs6` (label `AlertJson`)")
        public static let framing = ConfigurationKey(
            .sink, "framing", .choice(SyslogFraming.allCases.map(\.rawValue)), default: .string("octet-counting"), sinkTypes: ["syslog"],
            "`tcp://` and `tls://` only: `octet-counting` (RFC 6587, `LEN SP MSG`) or `lf` (a line end after each message; line breaks inside become spaces)"
        )
        public static let facility = ConfigurationKey(
            .sink, "facility", .choice(SyslogFacility.allCases.map(\.rawValue)), default: .string("local0"), sinkTypes: ["syslog"],
            "the syslog facility; the severity comes from the alert's (High 2 crit, Medium 3 err, Low 4 warning, Informational 5 notice, else 6 info)"
        )
        public static let appName = ConfigurationKey(
            .sink, "app_name", .string, default: .string("defender-alertd"), sinkTypes: ["syslog"],
            "APP-NAME (RFC 5424, at most 48 printable ASCII characters) or TAG (RFC 3164)")
        public static let hostname = ConfigurationKey(
            .sink, "hostname", .string, defaultDescription: "the machine's host name", sinkTypes: ["syslog"],
            "HOSTNAME of every message")
        public static let enterpriseNumber = ConfigurationKey(
            .sink, "enterprise_number", .integer(1...2_147_483_647), default: .integer(32473), sinkTypes: ["syslog"],
            "the private enterprise number in the structured data's ID `defender@N` (32473 is the number reserved for documentation; use your organisation's)"
        )
        public static let maxMessageSize = ConfigurationKey(
            .sink, "max_message_size", .size, default: .string("64KiB"), sinkTypes: ["syslog"],
            "a longer message is never cut: it is refused, logged and kept as a dead letter (UDP: never above 65,507 bytes); the receiver must accept this size too (rsyslog: `maxMessageSize`)"
        )
        public static let timeout = ConfigurationKey(
            .sink, "timeout", .duration(minimum: .milliseconds(100)), default: .string("30s"), sinkTypes: ["syslog", "http"],
            "syslog: connecting, writing a batch and waiting for each RELP answer; http: a whole request and its answer; past it the batch is retried"
        )
        public static let caFile = ConfigurationKey(
            .sink, "ca_file", .path, sinkTypes: ["syslog", "http"],
            "`tls://` and `https://` only: a PEM CA bundle trusted besides the system's (a private CA); verification is always on")
        public static let clientCertificateFile = ConfigurationKey(
            .sink, "client_certificate_file", .path, sinkTypes: ["syslog"],
            "`tls://` only: PEM client certificate, for receivers that require one; with `client_key_file` or `client_key_credential`")
        public static let clientKeyFile = ConfigurationKey(
            .sink, "client_key_file", .path, sinkTypes: ["syslog"],
            "`tls://` only: the client certificate's PEM private key, mode `0600` or `0400`, owned by root or the daemon's user")
        public static let clientKeyCredential = ConfigurationKey(
            .sink, "client_key_credential", .string, sinkTypes: ["syslog"],
            "`tls://` only: or that key as a systemd credential name")
        public static let serverName = ConfigurationKey(
            .sink, "server_name", .string, defaultDescription: "the host of `address`", sinkTypes: ["syslog"],
            "`tls://` only: the name the receiver's certificate must hold (and SNI); an IP address is checked against the certificate's IP entries")

        public static let url = ConfigurationKey(
            .sink, "url", .string, required: true, sinkTypes: ["http"],
            "where alerts are POSTed: `https://...` (plain `http://` only to a loopback address)")
        public static let httpFormat = ConfigurationKey(
            .sink, "format", .choice(HTTPBodyFormat.allCases.map(\.rawValue)), default: .string("json"), sinkTypes: ["http"],
            "`json` (one alert per request), `json-array`, `ndjson`, `splunk-hec` (HTTP Event Collector events) or `elasticsearch-bulk` (index actions, `_id` = alert id and `lastUpdateTime`)"
        )
        public static let auth = ConfigurationKey(
            .sink, "auth", .choice(HTTPAuthorization.allCases.map(\.rawValue)),
            defaultDescription: "`splunk` for splunk-hec, `apikey` for elasticsearch-bulk, else `bearer`", sinkTypes: ["http"],
            "how the token is sent: `Authorization: Splunk <token>`, `Bearer <token>`, `Basic base64(<token>)` (the token `user:password`) or `ApiKey <token>`"
        )
        public static let tokenFile = ConfigurationKey(
            .sink, "token_file", .path, sinkTypes: ["http"],
            "the token in a file, mode `0600` or `0400`, owned by root or the daemon's user; without a token no `Authorization` is sent")
        public static let tokenCredential = ConfigurationKey(
            .sink, "token_credential", .string, sinkTypes: ["http"],
            "or the token as a systemd credential name")
        public static let headers = ConfigurationKey(
            .sink, "headers", .stringTable, sinkTypes: ["http"],
            "static, non-secret headers, e.g. `{ \"X-Source\" = \"mde\" }` (`Authorization`, `Content-Type`, `Content-Encoding` and `Host` are set by the sink)"
        )
        public static let batchMaxAlerts = ConfigurationKey(
            .sink, "batch_max_alerts", .integer(1...10_000), default: .integer(500), sinkTypes: ["http"],
            "alerts per request at most (`json`: always 1)")
        public static let batchMaxBytes = ConfigurationKey(
            .sink, "batch_max_bytes", .size, default: .string("5MB"), sinkTypes: ["http"],
            "request body size at most, before gzip (one alert larger than this goes alone)")
        public static let flushInterval = ConfigurationKey(
            .sink, "flush_interval", .duration(minimum: .zero), default: .string("1s"), sinkTypes: ["http"],
            "how long the sink waits, once woken by new alerts, for more to fill a request (`\"0s\"`: send at once)")
        public static let gzip = ConfigurationKey(
            .sink, "gzip", .boolean, default: .boolean(false), sinkTypes: ["http"],
            "compress request bodies (`Content-Encoding: gzip`)")
        public static let index = ConfigurationKey(
            .sink, "index", .string,
            defaultDescription:
                "splunk-hec: the token's default index; elasticsearch-bulk: `defender-alerts` (`data_stream = true`: `logs-defender_alertd.alert-default`)",
            sinkTypes: ["http"],
            "splunk-hec and elasticsearch-bulk: where alerts go")
        public static let sourcetype = ConfigurationKey(
            .sink, "sourcetype", .string,
            defaultDescription:
                "`ms:defender:atp:alerts` (Splunk's add-on for Microsoft Security); with `schema = \"ecs\"` or `\"ocsf\"`, `defender:alert:ecs` or `defender:alert:ocsf`",
            sinkTypes: ["http"],
            "splunk-hec: the sourcetype of alerts")
        public static let incidentSourcetype = ConfigurationKey(
            .sink, "incident_sourcetype", .string,
            defaultDescription:
                "`ms365:defender:incident` (Splunk's add-on for Microsoft Security); with `schema = \"ecs\"` or `\"ocsf\"`, `defender:incident:ecs` or `defender:incident:ocsf`",
            sinkTypes: ["http"],
            "splunk-hec: the sourcetype of incidents")
        public static let incidentIndex = ConfigurationKey(
            .sink, "incident_index", .string,
            defaultDescription:
                "splunk-hec: `index`; elasticsearch-bulk: `defender-incidents` (`data_stream = true`: `logs-defender_alertd.incident-default`)",
            sinkTypes: ["http"],
            "splunk-hec and elasticsearch-bulk: where incidents go")
        public static let dataStream = ConfigurationKey(
            .sink, "data_stream", .boolean, default: .boolean(false), sinkTypes: ["http"],
            "elasticsearch-bulk: write to data streams (`create` actions; a record sent again is refused as already there, which counts as delivered); `index` and `incident_index` then default to `logs-defender_alertd.alert-default` and `logs-defender_alertd.incident-default`"
        )
        public static let pipeline = ConfigurationKey(
            .sink, "pipeline", .string, sinkTypes: ["http"],
            "elasticsearch-bulk: the ingest pipeline every document goes through (none: the index's default pipeline)")
        public static let schema = ConfigurationKey(
            .sink, "schema", .choice(RecordShape.Schema.allCases.map(\.rawValue)), default: .string("native"),
            sinkTypes: ["stdout", "file", "syslog", "http"],
            "`native` (the record exactly as Defender returned it), `ecs` (Elastic Common Schema documents) or `ocsf` (OCSF Detection Finding and Incident Finding events), see Schemas; stdout and file: with `format = \"alert\"`; syslog: with `format = \"json\"`"
        )
        public static let evidence = ConfigurationKey(
            .sink, "evidence", .choice(RecordShape.Evidence.allCases.map(\.rawValue)), default: .string("inline"),
            sinkTypes: ["stdout", "file", "syslog", "http"],
            "`inline` (one record per alert) or `split` (one record per evidence entity, each with the alert's id and summary, delivered together: all or nothing for the alert)"
        )
        public static let includeOriginal = ConfigurationKey(
            .sink, "include_original", .boolean, default: .boolean(false), sinkTypes: ["stdout", "file", "syslog", "http"],
            "`schema = \"ecs\"` or `\"ocsf\"` only: also carry the record's JSON as Defender returned it (`event.original`, `raw_data`)")
        public static let source = ConfigurationKey(
            .sink, "source", .string, sinkTypes: ["http"], "splunk-hec: the events' source (none: HEC's default)")
        public static let host = ConfigurationKey(
            .sink, "host", .string, sinkTypes: ["http"], "splunk-hec: the events' host (none: HEC's default, the sender's address)")

        public static let all = [
            name, type, path, format, maxSize, maxFiles, address, syslogProtocol, syslogFormat, cefAlertJSON, framing,
            facility, appName, hostname, enterpriseNumber, maxMessageSize, timeout, caFile, clientCertificateFile,
            clientKeyFile, clientKeyCredential, serverName, url, httpFormat, auth, tokenFile, tokenCredential, headers,
            batchMaxAlerts, batchMaxBytes, flushInterval, gzip, index, incidentIndex, sourcetype, incidentSourcetype, source, host,
            dataStream, pipeline, schema, evidence, includeOriginal,
        ]
    }
}
