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
    /// Splunk: the index of alerts (none: the token's default); Elasticsearch: the index (or
    /// data stream) of alerts.
    public var index: String?
    /// The index (or data stream) of incidents: Elasticsearch `defender-incidents` (data
    /// streams: `logs-defender_alertd.incident-default`); Splunk: `index`.
    public var incidentIndex: String?
    /// HEC's sourcetype of alerts and of incidents, when set (else ``sourcetype(for:)``'s defaults).
    public var alertSourcetype: String?
    public var incidentSourcetype: String?
    public var source: String?
    public var host: String?
    /// An extra CA bundle trusted besides the system's.
    public var caFile: String?
    /// The records' shape: Defender's JSON, ECS or OCSF, evidence inline or split.
    public var shape: RecordShape
    /// Elasticsearch: write to data streams (`create` actions, which a data stream requires).
    public var dataStream: Bool
    /// Elasticsearch: the ingest pipeline each document goes through (none: the index's default).
    public var pipeline: String?

    /// The bulk action: `index` (a document sent again replaces itself), or `create` for a
    /// data stream (a document sent again is refused with 409, which counts as delivered).
    public enum BulkOperation: String, Sendable {
        case index, create
    }

    public var operation: BulkOperation { dataStream ? .create : .index }

    public init(
        url: String, format: HTTPBodyFormat = .json, authorization: HTTPAuthorization? = nil, token: Secret? = nil,
        headers: [String: String] = [:], batchMaxAlerts: Int = 500, batchMaxBytes: Int = 5_000_000, flushInterval: Duration = .seconds(1),
        timeout: Duration = .seconds(30), gzip: Bool = false, index: String? = nil, incidentIndex: String? = nil,
        sourcetype: String? = nil, incidentSourcetype: String? = nil, source: String? = nil, host: String? = nil, caFile: String? = nil,
        shape: RecordShape = .native, dataStream: Bool = false, pipeline: String? = nil
    ) {
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
        let elasticsearch = format == .elasticsearchBulk
        self.index = index ?? (elasticsearch ? (dataStream ? Self.dataStreamName(.alert) : "defender-alerts") : nil)
        self.incidentIndex = incidentIndex ?? (elasticsearch ? (dataStream ? Self.dataStreamName(.incident) : "defender-incidents") : self.index)
        self.alertSourcetype = sourcetype
        self.incidentSourcetype = incidentSourcetype
        self.source = source
        self.host = host
        self.caFile = caFile
        self.shape = shape
        self.dataStream = dataStream
        self.pipeline = pipeline
    }

    /// A data stream of our own dataset (`logs-defender_alertd.alert-default`): the `logs-*-*`
    /// index template of Elasticsearch makes it a data stream, and the name is none of
    /// Elastic's integrations' (theirs is `m365_defender`).
    public static func dataStreamName(_ kind: RecordKind) -> String {
        "logs-defender_alertd.\(kind.rawValue)-default"
    }

    /// Where records of `kind` go: ``index`` or ``incidentIndex``.
    func index(for kind: RecordKind) -> String? {
        kind == .incident ? incidentIndex : index
    }

    /// HEC's sourcetype of `kind`: the one set, else for Defender's JSON those of Splunk's
    /// add-on for Microsoft Security (`ms:defender:atp:alerts` for alerts,
    /// `ms365:defender:incident` for incidents), and `defender:alert:ecs`,
    /// `defender:incident:ocsf` and so on for the mapped shapes, which the add-on does not read.
    public func sourcetype(for kind: RecordKind) -> String {
        if let set = kind == .incident ? incidentSourcetype : alertSourcetype { return set }
        switch shape.schema {
        case .native: return kind == .incident ? "ms365:defender:incident" : "ms:defender:atp:alerts"
        case .ecs, .ocsf: return "defender:\(kind.rawValue):\(shape.schema.rawValue)"
        }
    }
}
