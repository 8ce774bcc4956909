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
    /// An alert, or an incident of Graph's `security/incidents` (its `id`, update time and
    /// headline read the same way; its title is `displayName`).
    public let kind: RecordKind
    /// Where the members of ``headline`` are in ``bytes`` (offsets from its start), found in
    /// the same pass as `id`.
    private let headlineRanges: HeadlineRanges
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
    public var title: String? { member(kind.titleMember) }
    public var computerDnsName: String? { member("computerDnsName") }
    public var machineId: String? { member("machineId") }
    /// A number or a string in the API's answers; its text either way.
    public var incidentId: String? { member("incidentId", orNumber: true) }

    /// The top-level members a sink shows, as the alert has them (either API names them so).
    /// The page's scan only notes where they are: their text is made when asked for (a sink
    /// that writes the alert's bytes as they came never pays for it), with no second pass over
    /// the alert. A Graph alert names its device in its evidence instead; that is read from
    /// ``bytes`` when a sink needs it.
    public struct Headline: Sendable, Equatable {
        public var severity: String?
        public var title: String?
        public var computerDnsName: String?
        public var status: String?
        /// `lastUpdateTime` (`lastUpdateDateTime`) as the API wrote it.
        public var lastUpdateTime: String
    }

    /// The headline's members, decoded from ``bytes``.
    public var headline: Headline {
        bytes.withUnsafeBytes { raw in
            let scanner = JSONScanner(raw.bindMemory(to: UInt8.self))
            func text(_ range: Range<Int>?) -> String? { range.flatMap { scanner.string(at: $0) } }
            let ranges = headlineRanges
            return Headline(
                severity: text(ranges.severity), title: text(ranges.title), computerDnsName: text(ranges.computerDnsName),
                status: text(ranges.status), lastUpdateTime: text(ranges.lastUpdateTime) ?? "")
        }
    }

    /// Where each member of ``Headline`` is in ``bytes`` (nil: the alert has none).
    private struct HeadlineRanges: Sendable, Equatable {
        var severity, title, computerDnsName, status: Range<Int>?
        var lastUpdateTime: Range<Int>
    }

    /// The members decoded while a page is read, in the order ``init(_:in:body:api:)`` reads them.
    static func decodedMembers(_ api: AlertsAPI, _ kind: RecordKind = .alert) -> [String] {
        ["id", api.updateTimeMember, "severity", kind.titleMember, "computerDnsName", "status"]
    }

    /// Decodes an element of a scanned response (`body`, which `scanner` reads); `id` and the
    /// update time are required.
    init(_ element: JSONScanner.Element, in scanner: JSONScanner, body: Data, api: AlertsAPI, kind: RecordKind = .alert) throws(DefenderAPIError) {
        guard element.isObject else { throw .malformedResponse("an element of value is not an object") }
        guard let id = element.members[0].flatMap({ scanner.string(at: $0) }), !id.isEmpty else {
            throw .malformedResponse("an alert has no string id")
        }
        guard let updatedRange = element.members[1], let text = scanner.string(at: updatedRange), let updated = Timestamp(parsing: text) else {
            throw .malformedResponse("alert \(id) has no valid \(api.updateTimeMember)")
        }
        self.id = id
        lastUpdateTime = updated
        // Offsets in the alert's own bytes, where the page's scan gave them in the body.
        let start = element.range.lowerBound
        func local(_ range: Range<Int>) -> Range<Int> { (range.lowerBound - start)..<(range.upperBound - start) }
        headlineRanges = HeadlineRanges(
            severity: element.members[2].map(local), title: element.members[3].map(local),
            computerDnsName: element.members[4].map(local), status: element.members[5].map(local),
            lastUpdateTime: local(updatedRange))
        self.api = api
        self.kind = kind
        bytes = body[body.startIndex + element.range.lowerBound..<body.startIndex + element.range.upperBound]
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
    public init(json: String, api: AlertsAPI = .mde, kind: RecordKind = .alert) throws(DefenderAPIError) {
        let body = Data(json.utf8)
        let result: Result<Alert, DefenderAPIError> = body.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            var scanner = JSONScanner(bytes)
            let members: [Range<Int>?]
            do throws(JSONParseError) {
                members = try scanner.members(Self.decodedMembers(api, kind))
            } catch {
                return .failure(.malformedResponse(error.description))
            }
            let element = JSONScanner.Element(range: 0..<bytes.count, isObject: true, members: members)
            do throws(DefenderAPIError) {
                return .success(try Alert(element, in: scanner, body: body, api: api, kind: kind))
            } catch {
                return .failure(error)
            }
        }
        self = try result.get()
    }
}
