import Foundation
import OrderedJSON
import Timekeeping

/// One record as the daemon admitted it: an alert (either API's) or an incident (Microsoft
/// Graph's), with what the daemon knows of it besides its JSON. What the schema mappings read.
public struct DefenderRecord: Sendable {
    public enum Kind: String, Sendable {
        case alert
        case incident
    }

    public var kind: Kind
    /// The tenant's name in the configuration.
    public var tenant: String
    /// `created` or `updated`.
    public var event: String
    /// When the daemon stored it (ISO 8601, UTC).
    public var receivedAt: String
    /// The record's JSON as the API returned it.
    public var document: JSONValue
    /// The same JSON as text, for `event.original` and `raw_data`.
    public var original: String

    /// nil when `payload` is not JSON (the admission scan validated it, so only a state edited
    /// by hand gives one).
    public init?(kind: Kind, tenant: String, event: String, receivedAt: String, payload: [UInt8]) {
        let text = String(decoding: payload, as: UTF8.self)
        guard let document = try? JSONValue(parsing: text), case .object = document else { return nil }
        self.init(kind: kind, tenant: tenant, event: event, receivedAt: receivedAt, document: document, original: text)
    }

    public init(kind: Kind, tenant: String, event: String, receivedAt: String, document: JSONValue, original: String) {
        (self.kind, self.tenant, self.event, self.receivedAt, self.document, self.original) = (kind, tenant, event, receivedAt, document, original)
    }

    /// A Microsoft Graph record (every incident; an alert of `alerts_v2`, which names its
    /// update time `lastUpdateDateTime`), else an alert of the Defender for Endpoint API.
    var isGraph: Bool {
        kind == .incident || document["lastUpdateDateTime"] != nil || document["@odata.type"] != nil
    }

    /// The member `graph` of a Graph record, `mde` of an MDE alert: a string, or a number as
    /// its text (MDE's `incidentId` is a number, Graph's a string); nil for anything else.
    func text(mde: String?, graph: String?) -> String? {
        guard let name = isGraph ? graph : mde else { return nil }
        return document[name].flatMap(JSONValue.scalarText)
    }

    /// `lastUpdateTime` (Graph `lastUpdateDateTime`), else the time the daemon stored it.
    var updateTime: String {
        text(mde: "lastUpdateTime", graph: "lastUpdateDateTime").flatMap { Timestamp(parsing: $0) == nil ? nil : $0 } ?? receivedAt
    }

    /// An incident's alerts (`$expand=alerts`), each read as an alert of Graph; none for an
    /// alert, or an incident that came without them.
    var incidentAlerts: [DefenderRecord] {
        guard kind == .incident, case .array(let elements) = document["alerts"] else { return [] }
        return elements.compactMap { element in
            guard case .object = element else { return nil }
            return DefenderRecord(kind: .alert, tenant: tenant, event: event, receivedAt: receivedAt, document: element, original: "")
        }
    }

    /// The members not in `used`, for the custom namespace (`defender.*`, `unmapped`).
    func rest(without used: Set<String>) -> JSONValue {
        guard case .object(let members) = document else { return .object([]) }
        return JSONValue.object(members.filter { !used.contains($0.0) }).forNamespace
    }

    /// The product that made it when the record does not say (Graph's `productName`): an
    /// incident is Defender XDR's, an alert of the MDE API Defender for Endpoint's.
    var productName: String {
        kind == .incident ? "Microsoft Defender XDR" : "Microsoft Defender for Endpoint"
    }

    /// The record's id and version: the same for the same version of the same record, in
    /// every shape (the Elasticsearch `_id`, OCSF's `metadata.uid`).
    var versionID: String {
        (text(mde: "id", graph: "id") ?? "") + "_" + updateTime
    }
}

extension JSONValue {
    /// A string, or a number's or a boolean's text; nil for null, arrays and objects.
    static func scalarText(_ value: JSONValue) -> String? {
        switch value {
        case .string(let text): text.isEmpty ? nil : text
        case .number(let text): text
        case .bool(let flag): flag ? "true" : "false"
        default: nil
        }
    }

    /// The strings of an array (other elements skipped); a lone string as one.
    var strings: [String] {
        switch self {
        case .array(let values): values.compactMap(\.stringValue).filter { !$0.isEmpty }
        case .string(let text): text.isEmpty ? [] : [text]
        default: []
        }
    }

    /// Copy for a custom namespace: member names Elasticsearch or a columnar store cannot take
    /// as they are (`@odata.type`: a leading `@` dropped, dots become `_`), and `null` members
    /// left out, at every depth.
    var forNamespace: JSONValue {
        switch self {
        case .object(let members):
            .object(
                members.compactMap { name, value in
                    if case .null = value { return nil }
                    return (JSONValue.namespaceName(name), value.forNamespace)
                })
        case .array(let values): .array(values.map(\.forNamespace))
        default: self
        }
    }

    static func namespaceName(_ name: String) -> String {
        String(name.drop { $0 == "@" }).replacingOccurrences(of: ".", with: "_")
    }
}

/// An ISO 8601 time as epoch milliseconds (OCSF's `timestamp_t`).
func epochMilliseconds(_ text: String?) -> Int64? {
    guard let text, let time = Timestamp(parsing: text) else { return nil }
    let ticks = time.ticks
    return ticks >= 0 ? ticks / 10_000 : -((-ticks + 9_999) / 10_000)
}

/// `evidence = "split"` in Defender's own shape: the alert once per evidence entity, its
/// `evidence` array holding that entity alone; an alert with no evidence (and an incident)
/// stays one record.
public enum NativeEvidenceSplit {
    public static func documents(for record: DefenderRecord) -> [JSONValue] {
        guard record.kind == .alert, case .array(let elements) = record.document["evidence"], !elements.isEmpty else { return [record.document] }
        return elements.map { element in
            var document = record.document
            document.set("evidence", .array([element]))
            return document
        }
    }
}
