import Foundation
import OrderedJSON
import Timekeeping

/// One alert: the two fields the daemon itself needs (`id`, and when it last changed:
/// `lastUpdateTime`, Graph's `lastUpdateDateTime`), and the whole object exactly as the API
/// sent it, byte for byte (unknown fields, nulls, number text, escapes and member order
/// included), which is what sinks receive. Other fields are read from the bytes when asked for
/// (by tools and tests; the forwarding path never needs them).
public struct Alert: Sendable, Equatable {
    public let id: String
    /// When the alert last changed (MDE `lastUpdateTime`, Graph `lastUpdateDateTime`).
    public let lastUpdateTime: Timestamp
    /// The API the alert came from, which names its members.
    public let api: AlertsAPI
    /// The few members every sink shows, read in the same pass as `id` (see ``Headline``).
    public let headline: Headline
    /// The alert's JSON object exactly as it was in the response (valid UTF-8: the scanner
    /// checked it): a slice of the response body, which the alerts of a page share (no copy;
    /// indices are those of the body).
    public let bytes: Data
    /// The same as text.
    public var json: String { String(decoding: bytes, as: UTF8.self) }

    /// When the alert was created (MDE `alertCreationTime`, Graph `createdDateTime`).
    public var creationTime: Timestamp? { member(api.creationTimeMember).flatMap { Timestamp(parsing: $0) } }
    /// Any string the API sends (not only the documented values).
    public var severity: String? { member("severity") }
    public var status: String? { member("status") }
    public var title: String? { member("title") }
    public var computerDnsName: String? { member("computerDnsName") }
    public var machineId: String? { member("machineId") }
    /// A number or a string in the API's answers; its text either way.
    public var incidentId: String? { member("incidentId", orNumber: true) }

    /// The top-level members a sink shows, as the alert has them (either API names them so),
    /// taken while the page is read: no second pass over the alert. A Graph alert names its
    /// device in its evidence instead; that is read from ``bytes`` when a sink needs it.
    public struct Headline: Sendable, Equatable {
        public var severity: String?
        public var title: String?
        public var computerDnsName: String?
        public var status: String?
        /// `lastUpdateTime` (`lastUpdateDateTime`) as the API wrote it.
        public var lastUpdateTime: String
    }

    /// The members decoded while a page is read, in the order ``init(_:in:body:api:)`` reads them.
    static func decodedMembers(_ api: AlertsAPI) -> [String] { ["id", api.updateTimeMember, "severity", "title", "computerDnsName", "status"] }

    /// Decodes an element of a scanned response (`body`, which `scanner` reads); `id` and the
    /// update time are required.
    init(_ element: JSONScanner.Element, in scanner: JSONScanner, body: Data, api: AlertsAPI) throws(DefenderAPIError) {
        guard element.isObject else { throw .malformedResponse("an element of value is not an object") }
        func string(_ slot: Int) -> String? { element.members[slot].flatMap { scanner.string(at: $0) } }
        guard let id = string(0), !id.isEmpty else { throw .malformedResponse("an alert has no string id") }
        guard let text = string(1), let updated = Timestamp(parsing: text) else {
            throw .malformedResponse("alert \(id) has no valid \(api.updateTimeMember)")
        }
        self.id = id
        lastUpdateTime = updated
        headline = Headline(severity: string(2), title: string(3), computerDnsName: string(4), status: string(5), lastUpdateTime: text)
        self.api = api
        bytes = body[body.startIndex + element.range.lowerBound ..< body.startIndex + element.range.upperBound]
    }

    /// A top-level string member (or number, when allowed) as text; nil when absent or another type.
    private func member(_ name: String, orNumber: Bool = false) -> String? {
        bytes.withUnsafeBytes { raw in
            var scanner = JSONScanner(raw.bindMemory(to: UInt8.self))
            guard let found = try? scanner.members([name]), let range = found[0] else { return nil }
            return scanner.string(at: range) ?? (orNumber ? scanner.number(at: range) : nil)
        }
    }

    /// Decodes one alert object given as JSON text (for tests and tools).
    public init(json: String, api: AlertsAPI = .mde) throws(DefenderAPIError) {
        let body = Data(json.utf8)
        let result: Result<Alert, DefenderAPIError> = body.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            var scanner = JSONScanner(bytes)
            let members: [Range<Int>?]
            do throws(JSONParseError) {
                members = try scanner.members(Self.decodedMembers(api))
            } catch {
                return .failure(.malformedResponse(error.description))
            }
            let element = JSONScanner.Element(range: 0..<bytes.count, isObject: true, members: members)
            do throws(DefenderAPIError) {
                return .success(try Alert(element, in: scanner, body: body, api: api))
            } catch {
                return .failure(error)
            }
        }
        self = try result.get()
    }
}
