import DefenderAPI
import Foundation

/// How an `http` sink puts alerts into a request body.
public enum HTTPBodyFormat: String, Sendable, CaseIterable {
    /// One alert per request, the body the alert JSON as Defender returned it.
    case json
    /// `[alert, alert, ...]`.
    case jsonArray = "json-array"
    /// One alert JSON per line.
    case ndjson
    /// Splunk HTTP Event Collector events: `{"time", "host", "source", "sourcetype", "index", "event": alert}` one per line.
    case splunkHEC = "splunk-hec"
    /// The Elasticsearch bulk API: an `index` action (`_id` = alert id and `lastUpdateTime`) then the alert, per alert.
    case elasticsearchBulk = "elasticsearch-bulk"

    /// The request's `Content-Type`.
    var contentType: String {
        switch self {
        case .json, .jsonArray, .splunkHEC: "application/json"
        case .ndjson, .elasticsearchBulk: "application/x-ndjson"
        }
    }

    /// The authorization scheme a receiver of this format expects.
    var defaultAuthorization: HTTPAuthorization {
        switch self {
        case .splunkHEC: .splunk
        case .elasticsearchBulk: .apikey
        default: .bearer
        }
    }
}

/// How the token goes into `Authorization:`.
public enum HTTPAuthorization: String, Sendable, CaseIterable {
    /// `Splunk <token>` (Splunk HEC).
    case splunk
    /// `Bearer <token>`.
    case bearer
    /// `Basic base64(<token>)`, the token being `user:password`.
    case basic
    /// `ApiKey <token>` (Elasticsearch: the base64 `id:api_key` it hands out as `encoded`).
    case apikey

    /// The header value for `token`.
    func header(_ token: Secret) -> Secret {
        token.withValue { value in
            switch self {
            case .splunk: Secret("Splunk " + value)
            case .bearer: Secret("Bearer " + value)
            case .basic: Secret("Basic " + Data(value.utf8).base64EncodedString())
            case .apikey: Secret("ApiKey " + value)
            }
        }
    }
}

/// Everything an `http` sink needs.
public struct HTTPSinkSettings: Sendable, Equatable {
    public var url: String
    public var format: HTTPBodyFormat
    public var authorization: HTTPAuthorization
    /// Read at load time under the secret rules; `nil`: no `Authorization` header.
    public var token: Secret?
    /// Static, non-secret headers.
    public var headers: [String: String]
    public var batchMaxAlerts: Int
    public var batchMaxBytes: Int
    /// How long a woken worker waits for more alerts before it sends a partial batch.
    public var flushInterval: Duration
    public var timeout: Duration
    public var gzip: Bool
    /// Splunk: the index (none: the token's default); Elasticsearch: the index.
    public var index: String?
    public var sourcetype: String
    public var source: String?
    public var host: String?
    /// An extra CA bundle trusted besides the system's.
    public var caFile: String?

    public init(url: String, format: HTTPBodyFormat = .json, authorization: HTTPAuthorization? = nil, token: Secret? = nil,
                headers: [String: String] = [:], batchMaxAlerts: Int = 500, batchMaxBytes: Int = 5_000_000, flushInterval: Duration = .seconds(1),
                timeout: Duration = .seconds(30), gzip: Bool = false, index: String? = nil, sourcetype: String = "ms:defender:atp:alerts",
                source: String? = nil, host: String? = nil, caFile: String? = nil) {
        self.url = url
        self.format = format
        self.authorization = authorization ?? format.defaultAuthorization
        self.token = token
        self.headers = headers
        self.batchMaxAlerts = format == .json ? 1 : batchMaxAlerts
        self.batchMaxBytes = batchMaxBytes
        self.flushInterval = flushInterval
        self.timeout = timeout
        self.gzip = gzip
        self.index = index ?? (format == .elasticsearchBulk ? "defender-alerts" : nil)
        self.sourcetype = sourcetype
        self.source = source
        self.host = host
        self.caFile = caFile
    }
}
