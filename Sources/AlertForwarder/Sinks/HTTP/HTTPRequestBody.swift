import Foundation
import OrderedJSON
import Timekeeping

/// The request bodies of an `http` sink, per format. Alerts go in as the bytes Defender sent;
/// in line-based formats a line break between JSON tokens becomes a space (a line break
/// inside a JSON string is always escaped, so nothing else can be one).
enum HTTPRequestBody {
    /// The records split into requests of at most `batchMaxAlerts` alerts and (unless one
    /// alert alone is larger) `batchMaxBytes` bytes of body.
    static func requests(for records: [OutboxRecord], settings: HTTPSinkSettings) -> [[OutboxRecord]] {
        var requests: [[OutboxRecord]] = []
        var current: [OutboxRecord] = []
        var size = 2
        for record in records {
            let added = entry(for: record, settings: settings).count + 1
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
    static func encode(_ records: [OutboxRecord], settings: HTTPSinkSettings) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(records.reduce(0) { $0 + $1.payloadBytes.count + 200 })
        switch settings.format {
        case .json:
            body += records.first?.payloadBytes ?? []
        case .jsonArray:
            body.append(UInt8(ascii: "["))
            for (index, record) in records.enumerated() {
                if index > 0 { body.append(UInt8(ascii: ",")) }
                body += record.payloadBytes
            }
            body.append(UInt8(ascii: "]"))
        case .ndjson, .splunkHEC, .elasticsearchBulk:
            for record in records {
                body += entry(for: record, settings: settings)
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
            let headline = AlertHeadline(payload: record.payloadBytes)
            var members: [(String, JSONValue)] = []
            if let time = headline.lastUpdateTime.flatMap({ Timestamp(parsing: $0) }) {
                let milliseconds = time.ticks / 10_000
                members.append(("time", .number("\(milliseconds / 1000).\(String(format: "%03d", milliseconds % 1000))")))
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
            let headline = AlertHeadline(payload: record.payloadBytes)
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
