import Foundation
import OrderedJSON
import Timekeeping

/// The request bodies of an `http` sink, per format. Alerts go in as the bytes Defender sent;
/// in line-based formats a line break between JSON tokens becomes a space (a line break
/// inside a JSON string is always escaped, so nothing else can be one).
enum HTTPRequestBody {
    /// Each record's part of a body (see `entry`), encoded once per `send` and used both to
    /// size the requests and to build them, also when a request is split again.
    typealias Entries = [Int64: [UInt8]]

    static func entries(for records: [OutboxRecord], settings: HTTPSinkSettings) -> Entries {
        Dictionary(records.map { ($0.id, entry(for: $0, settings: settings)) }, uniquingKeysWith: { first, _ in first })
    }

    /// The records split into requests of at most `batchMaxAlerts` alerts and (unless one
    /// alert alone is larger) `batchMaxBytes` bytes of body.
    static func requests(for records: [OutboxRecord], entries: Entries, settings: HTTPSinkSettings) -> [[OutboxRecord]] {
        var requests: [[OutboxRecord]] = []
        var current: [OutboxRecord] = []
        var size = 2
        for record in records {
            let added = (entries[record.id]?.count ?? 0) + 1
            if !current.isEmpty, current.count >= settings.batchMaxAlerts || size + added > settings.batchMaxBytes {
                requests.append(current)
                current = []
                size = 2
            }
            current.append(record)
            size += added
        }
        if !current.isEmpty { requests.append(current) }
        return requests
    }

    /// The body for `records`.
    static func encode(_ records: [OutboxRecord], entries: Entries, format: HTTPBodyFormat) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(records.reduce(2) { $0 + (entries[$1.id]?.count ?? 0) + 1 })
        switch format {
        case .json:
            body += records.first.flatMap { entries[$0.id] } ?? []
        case .jsonArray:
            body.append(UInt8(ascii: "["))
            for (index, record) in records.enumerated() {
                if index > 0 { body.append(UInt8(ascii: ",")) }
                body += entries[record.id] ?? []
            }
            body.append(UInt8(ascii: "]"))
        case .ndjson, .splunkHEC, .elasticsearchBulk:
            for record in records {
                body += entries[record.id] ?? []
                body.append(UInt8(ascii: "\n"))
            }
        }
        return body
    }

    /// One alert's part of a body, without a trailing line end.
    static func entry(for record: OutboxRecord, settings: HTTPSinkSettings) -> [UInt8] {
        switch settings.format {
        case .json, .jsonArray:
            return record.payloadBytes
        case .ndjson:
            return oneLine(record.payloadBytes)
        case .splunkHEC:
            let headline = record.headline
            var members: [(String, JSONValue)] = []
            if let time = headline.lastUpdateTime.flatMap({ Timestamp(parsing: $0) }) {
                // Sign and magnitude, so that a time before 1970 is -1.500, not "-1.-500" (not JSON).
                let milliseconds = time.ticks / 10_000
                let sign = milliseconds < 0 ? "-" : ""
                let magnitude = milliseconds.magnitude
                members.append(("time", .number("\(sign)\(magnitude / 1000).\(String(format: "%03d", Int(magnitude % 1000)))")))
            }
            if let host = settings.host { members.append(("host", .string(host))) }
            if let source = settings.source { members.append(("source", .string(source))) }
            members.append(("sourcetype", .string(settings.sourcetype)))
            if let index = settings.index { members.append(("index", .string(index))) }
            members.append(("fields", .object([("tenant", .string(record.tenant)), ("event", .string(record.event))])))
            var bytes = Array(JSONValue.object(members).serialized.utf8.dropLast())
            bytes += ",\"event\":".utf8
            bytes += oneLine(record.payloadBytes)
            bytes.append(UInt8(ascii: "}"))
            return bytes
        case .elasticsearchBulk:
            let headline = record.headline
            let id = record.alertID + "_" + (headline.lastUpdateTime ?? record.receivedAt)
            let action = JSONValue.object([("index", .object([("_index", .string(settings.index ?? "defender-alerts")), ("_id", .string(id))]))])
            return Array(action.serialized.utf8) + [UInt8(ascii: "\n")] + oneLine(record.payloadBytes)
        }
    }

    static func oneLine(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.contains(where: { $0 == 0x0A || $0 == 0x0D }) else { return bytes }
        return bytes.map { $0 == 0x0A || $0 == 0x0D ? UInt8(ascii: " ") : $0 }
    }
}
