import DefenderAPI
import Foundation
import OrderedJSON
import Timekeeping

/// The fields of an alert that sinks show (headlines, syslog, CEF), read from its JSON under
/// MDE's names whichever API it came from: a Graph alert's `lastUpdateDateTime`,
/// `firstActivityDateTime` and `lastActivityDateTime` stand for `lastUpdateTime`,
/// `firstEventTime` and `lastEventTime`, and its device evidence's `deviceDnsName` and
/// `mdeDeviceId` for `computerDnsName` and `machineId`, its first user evidence for
/// `relatedUser`. The rest (`title`, `severity`, `status`, `category`, `description`,
/// `detectorId`, `detectionSource`, `incidentId`) have the same names in both.
struct AlertFields {
    private(set) var values: [String: String] = [:]
    /// Graph: the service that raised the alert (`productName`, else `serviceSource`).
    var product: String?

    subscript(name: String) -> String? { values[name] }

    private static let members = [
        "id", "severity", "title", "status", "category", "description", "detectorId", "detectionSource", "incidentId",
        "lastUpdateTime", "firstEventTime", "lastEventTime", "computerDnsName", "machineId", "relatedUser",
        "lastUpdateDateTime", "firstActivityDateTime", "lastActivityDateTime", "productName", "serviceSource", "displayName",
    ]
    private static let graphNames = [
        "lastUpdateDateTime": "lastUpdateTime", "firstActivityDateTime": "firstEventTime", "lastActivityDateTime": "lastEventTime",
    ]
    /// The members of each evidence object that name a device or a user.
    private static let evidenceMembers = ["@odata.type", "deviceDnsName", "mdeDeviceId", "userAccount"]

    /// One pass over the payload (which the API answer's scan already validated), no tree built:
    /// this runs for every alert admitted (its headline), and for every alert a CEF sink writes.
    init(payload: [UInt8]) {
        self = payload.withUnsafeBufferPointer { AlertFields(bytes: $0) }
    }

    init(payload: Data) {
        self = payload.withUnsafeBytes { AlertFields(bytes: $0.assumingMemoryBound(to: UInt8.self)) }
    }

    fileprivate init(bytes: UnsafeBufferPointer<UInt8>) {
        do {
            var scanner = JSONScanner(bytes)
            // `evidence` that is not an array (`null`) leaves the other fields readable.
            var plain = JSONScanner(bytes)
            guard
                let document = (try? scanner.document(arrayMember: "evidence", collecting: Self.evidenceMembers, members: Self.members))
                    ?? (try? plain.members(Self.members)).map({ JSONScanner.Document(elements: nil, members: $0) })
            else { return }
            for (name, range) in zip(Self.members, document.members) {
                guard let range else { continue }
                switch name {
                case "relatedUser": values[name] = Self.user(UnsafeBufferPointer(rebasing: bytes[range]), name: "userName")
                case "productName", "serviceSource": product = product ?? scanner.string(at: range)
                default:
                    guard let value = scanner.string(at: range) ?? scanner.number(at: range) else { continue }
                    values[Self.graphNames[name] ?? name] = value
                }
            }
            // A Graph alert names its device and user in typed evidence.
            guard values["computerDnsName"] == nil, document.members[Self.members.firstIndex(of: "lastUpdateDateTime")!] != nil else { return }
            // An evidence element that is not an object (`null`, a number) has no members to read.
            for evidence in document.elements ?? [] where evidence.isObject {
                let member = { (name: String) in evidence.members[Self.evidenceMembers.firstIndex(of: name)!] }
                if values["computerDnsName"] == nil,
                    member("@odata.type").flatMap({ scanner.string(at: $0) }) == "#microsoft.graph.security.deviceEvidence"
                {
                    values["computerDnsName"] = member("deviceDnsName").flatMap { scanner.string(at: $0) }
                    values["machineId"] = member("mdeDeviceId").flatMap { scanner.string(at: $0) }
                }
                if values["relatedUser"] == nil, let account = member("userAccount") {
                    values["relatedUser"] = Self.user(UnsafeBufferPointer(rebasing: bytes[account]), name: "accountName")
                }
            }
        }
    }

    /// `DOMAIN\\user` (or `user`) of a user object; nil for `null` or no user name.
    static func user(_ bytes: UnsafeBufferPointer<UInt8>, name: String) -> String? {
        var scanner = JSONScanner(bytes)
        guard let ranges = try? scanner.members([name, "domainName"]),
            let user = ranges[0].flatMap({ scanner.string(at: $0) }), !user.isEmpty
        else { return nil }
        guard let domain = ranges[1].flatMap({ scanner.string(at: $0) }), !domain.isEmpty else { return user }
        return domain + "\\" + user
    }
}

/// The few fields of an alert every sink shows, taken from its JSON (either API's) once, at
/// admission, and stored with the outbox record: the journal sink's `MESSAGE` and `PRIORITY`,
/// the syslog PRI and time, the `summary` record format, HEC's `time`.
public struct AlertHeadline: Sendable, Equatable {
    /// `severity` and `title` as the alert has them (nil when it has none).
    var givenSeverity: String?
    var givenTitle: String?
    /// The device (`computerDnsName`, Graph's device evidence `deviceDnsName`), when the alert names one.
    public var host: String?
    public var status: String?
    /// `lastUpdateTime` (Graph `lastUpdateDateTime`) as the API wrote it.
    public var lastUpdateTime: String?

    /// The alert's severity, `UnSpecified` when it has none.
    public var severity: String { givenSeverity ?? "UnSpecified" }
    /// The alert's title, `Defender alert` when it has none.
    public var title: String { givenTitle ?? "Defender alert" }

    /// An alert that names none of them.
    init() {}

    /// The fields as a state stored them.
    init(givenSeverity: String?, givenTitle: String?, host: String?, status: String?, lastUpdateTime: String?) {
        (self.givenSeverity, self.givenTitle, self.host, self.status, self.lastUpdateTime) = (givenSeverity, givenTitle, host, status, lastUpdateTime)
    }

    /// Read at admission for every alert: one pass over its top-level members, no other value
    /// decoded (the evidence is skipped, not collected); only a Graph alert without a top-level
    /// device, which names it in its evidence, is read whole (``AlertFields``).
    init(payload: [UInt8]) {
        self = payload.withUnsafeBufferPointer { AlertHeadline(bytes: $0) }
    }

    init(payload: Data) {
        self = payload.withUnsafeBytes { AlertHeadline(bytes: $0.assumingMemoryBound(to: UInt8.self)) }
    }

    /// Taken at admission from what the page's scan read (``Alert/headline``); a Graph alert
    /// without a top-level device is read whole for its device evidence.
    init(_ alert: Alert) {
        givenSeverity = alert.headline.severity
        givenTitle = alert.headline.title
        host = alert.headline.computerDnsName
        status = alert.headline.status
        lastUpdateTime = alert.headline.lastUpdateTime
        if host == nil, alert.api == .graph {
            host = alert.bytes.withUnsafeBytes { AlertFields(bytes: $0.assumingMemoryBound(to: UInt8.self)) }["computerDnsName"]
        }
    }

    /// An incident's title is its `displayName` (a state that stored no headline, a dead letter
    /// sent again, reads it from here).
    private static let members = ["severity", "title", "computerDnsName", "status", "lastUpdateTime", "lastUpdateDateTime", "displayName"]

    private init(bytes: UnsafeBufferPointer<UInt8>) {
        var scanner = JSONScanner(bytes)
        guard let ranges = try? scanner.members(Self.members) else { return }
        let values = ranges.map { range in range.flatMap { scanner.string(at: $0) } }
        givenSeverity = values[0]
        givenTitle = values[1] ?? values[6]
        host = values[2]
        status = values[3]
        lastUpdateTime = values[4] ?? values[5]
        if host == nil, ranges[5] != nil {
            host = AlertFields(bytes: bytes)["computerDnsName"]
        }
    }

    init(_ fields: AlertFields) {
        givenSeverity = fields["severity"]
        givenTitle = fields["title"] ?? fields["displayName"]
        host = fields["computerDnsName"]
        status = fields["status"]
        lastUpdateTime = fields["lastUpdateTime"]
    }

    /// The syslog severity of the alert's, for the journal's `PRIORITY` and the syslog sink's
    /// PRI: High 2 (crit), Medium 3 (err), Low 4 (warning), Informational 5 (notice),
    /// anything else 6 (info).
    var syslogSeverity: Int { Self.syslogSeverity(of: severity) }

    static func syslogSeverity(of severity: String) -> Int {
        switch severity.lowercased() {
        case "high": 2
        case "medium": 3
        case "low": 4
        case "informational": 5
        default: 6
        }
    }

    /// `lastUpdateTime` to the second (`2026-11-25T18:38:22Z`), or `-` when it is missing or
    /// not a timestamp.
    var time: String {
        guard let text = lastUpdateTime, let timestamp = Timestamp(parsing: text) else { return "-" }
        return timestamp.writtenWith(0).description
    }
}

/// One line a person can read, for `format = "summary"`:
/// `2026-11-25T18:38:22Z [tenant] created High "Suspicious access to LSASS service" ws-hr-0031 da6393…`
enum SummaryLine {
    static func line(for record: OutboxRecord, showsTenant: Bool) -> String {
        let headline = record.headline
        var fields = [headline.time]
        if showsTenant { fields.append(printable(record.tenant)) }
        fields += [record.event, printable(headline.severity), quoted(headline.title), printable(headline.host ?? "-"), printable(record.alertID)]
        return fields.joined(separator: " ")
    }

    /// A title as a JSON string literal: quotes, backslashes and every control character are
    /// escaped (C0 by JSON's rules; DEL, C1 such as NEL, U+2028/U+2029 and the bidirectional
    /// controls as `\uXXXX`, see ``PrintableText``), so a line break in a title cannot start
    /// a forged line and an escape sequence cannot act on the reader's terminal.
    static func quoted(_ text: String) -> String {
        // JSON writes those others raw; `\uXXXX` inside the literal stands for the same text.
        PrintableText.escaped(JSONValue.string(text).serialized)
    }

    /// A single field: no spaces, quotes or unsafe characters inside (they would shift the
    /// columns or act on the terminal); else quoted.
    static func printable(_ text: String) -> String {
        guard text.isEmpty || text.unicodeScalars.contains(where: { $0 == " " || $0 == "\"" || PrintableText.isUnsafe($0) }) else {
            return text
        }
        return quoted(text)
    }
}
