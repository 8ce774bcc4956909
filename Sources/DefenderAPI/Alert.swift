import OrderedJSON
import Timekeeping

/// One alert: the fields the daemon itself needs, decoded tolerantly, and the whole object
/// exactly as the API returned it (unknown fields, nulls and number formats included), which
/// is what sinks receive.
public struct Alert: Sendable, Equatable {
    public let id: String
    public let lastUpdateTime: Timestamp
    public let alertCreationTime: Timestamp?
    /// Any string the API sends (not only the documented values).
    public let severity: String?
    public let status: String?
    public let title: String?
    public let computerDnsName: String?
    public let machineId: String?
    public let incidentId: String?
    /// The original object.
    public let raw: JSONValue

    /// Decodes an alert; only `id` and `lastUpdateTime` are required.
    public init(_ object: JSONValue) throws(DefenderAPIError) {
        guard case .object = object else { throw .malformedResponse("an element of value is not an object") }
        guard let id = object["id"]?.stringValue, !id.isEmpty else { throw .malformedResponse("an alert has no string id") }
        guard let text = object["lastUpdateTime"]?.stringValue, let updated = Timestamp(parsing: text) else {
            throw .malformedResponse("alert \(id) has no valid lastUpdateTime")
        }
        self.id = id
        lastUpdateTime = updated
        alertCreationTime = object["alertCreationTime"]?.stringValue.flatMap { Timestamp(parsing: $0) }
        severity = object["severity"]?.stringValue
        status = object["status"]?.stringValue
        title = object["title"]?.stringValue
        computerDnsName = object["computerDnsName"]?.stringValue
        machineId = object["machineId"]?.stringValue
        incidentId = switch object["incidentId"] {
        case .number(let text)?: text
        case .string(let text)?: text
        default: nil
        }
        raw = object
    }
}
