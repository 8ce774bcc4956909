import OrderedJSON
import Timekeeping

/// One alert: the fields the daemon itself needs, decoded tolerantly, and the whole object
/// exactly as the API sent it, byte for byte (unknown fields, nulls, number text, escapes and
/// member order included), which is what sinks receive.
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
    /// The alert's JSON object exactly as it was in the response.
    public let json: String

    /// The members decoded for the daemon's own use, in the order ``init(_:in:)`` reads them.
    static let decodedMembers = ["id", "lastUpdateTime", "alertCreationTime", "severity", "status", "title", "computerDnsName",
                                 "machineId", "incidentId"]

    /// Decodes an element of a scanned response; only `id` and `lastUpdateTime` are required.
    init(_ element: JSONScanner.Element, in scanner: JSONScanner, bytes: UnsafeBufferPointer<UInt8>) throws(DefenderAPIError) {
        guard element.isObject else { throw .malformedResponse("an element of value is not an object") }
        func string(_ slot: Int) -> String? { element.members[slot].flatMap { scanner.string(at: $0) } }
        guard let id = string(0), !id.isEmpty else { throw .malformedResponse("an alert has no string id") }
        guard let text = string(1), let updated = Timestamp(parsing: text) else {
            throw .malformedResponse("alert \(id) has no valid lastUpdateTime")
        }
        self.id = id
        lastUpdateTime = updated
        alertCreationTime = string(2).flatMap { Timestamp(parsing: $0) }
        severity = string(3)
        status = string(4)
        title = string(5)
        computerDnsName = string(6)
        machineId = string(7)
        incidentId = element.members[8].flatMap { scanner.number(at: $0) ?? scanner.string(at: $0) }
        json = String(decoding: UnsafeBufferPointer(rebasing: bytes[element.range]), as: UTF8.self)
    }

    /// Decodes one alert object given as JSON text (for tests and tools).
    public init(json: String) throws(DefenderAPIError) {
        var text = json
        let result: Result<Alert, DefenderAPIError> = text.withUTF8 { bytes in
            var scanner = JSONScanner(bytes)
            let members: [Range<Int>?]
            do throws(JSONParseError) {
                members = try scanner.members(Self.decodedMembers)
            } catch {
                return .failure(.malformedResponse(error.description))
            }
            let element = JSONScanner.Element(range: 0..<bytes.count, isObject: true, members: members)
            do throws(DefenderAPIError) {
                return .success(try Alert(element, in: scanner, bytes: bytes))
            } catch {
                return .failure(error)
            }
        }
        self = try result.get()
    }
}
