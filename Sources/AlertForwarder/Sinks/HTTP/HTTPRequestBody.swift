import Foundation
import OrderedJSON
import Timekeeping

/// The request bodies of an `http` sink, per format. Alerts go in as the bytes Defender sent;
/// in line-based formats a line break between JSON tokens becomes a space (a line break
/// inside a JSON string is always escaped, so nothing else can be one).
enum HTTPRequestBody {
    /// One record's part of a body: its documents (one, or one per evidence entity with
    /// `evidence = "split"`) in the format, without a trailing line end.
    struct Entry {
        var bytes: [UInt8]
        var documents: Int
    }

    /// Each record's entry, encoded once per `send` and used both to size the requests and to
    /// build them, also when a request is split again. A record missing here could not be
    /// shaped (see ``RecordShape/documents(for:)``).
    typealias Entries = [Int64: Entry]

    static func entries(for records: [OutboxRecord], settings: HTTPSinkSettings) -> Entries {
        var entries = Entries()
        for record in records where entries[record.id] == nil {
            entries[record.id] = entry(for: record, settings: settings)
        }
        return entries
    }

    /// The records split into requests of at most `batchMaxAlerts` alerts and (unless one
    /// alert alone is larger) `batchMaxBytes` bytes of body.
    static func requests(for records: [OutboxRecord], entries: Entries, settings: HTTPSinkSettings) -> [[OutboxRecord]] {
        var requests: [[OutboxRecord]] = []
        var current: [OutboxRecord] = []
        var size = 2
        for record in records {
            let added = (entries[record.id]?.bytes.count ?? 0) + 1
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
        body.reserveCapacity(records.reduce(2) { $0 + (entries[$1.id]?.bytes.count ?? 0) + 1 })
        switch format {
        case .json:
            body += records.first.flatMap { entries[$0.id]?.bytes } ?? []
        case .jsonArray:
            body.append(UInt8(ascii: "["))
            for (index, record) in records.enumerated() {
                if index > 0 { body.append(UInt8(ascii: ",")) }
                body += entries[record.id]?.bytes ?? []
            }
            body.append(UInt8(ascii: "]"))
        case .ndjson, .splunkHEC, .elasticsearchBulk:
            for record in records {
                body += entries[record.id]?.bytes ?? []
                body.append(UInt8(ascii: "\n"))
            }
        }
        return body
    }

    /// One record's part of a body, without a trailing line end; nil when the record cannot
    /// be written in the sink's shape.
    static func entry(for record: OutboxRecord, settings: HTTPSinkSettings) -> Entry? {
        guard let documents = settings.shape.documents(for: record) else { return nil }
        let parts = documents.enumerated().map { index, document in
            part(for: record, document: document, number: documents.count > 1 ? index : nil, settings: settings)
        }
        let separator: [UInt8] = settings.format == .jsonArray || settings.format == .json ? [UInt8(ascii: ",")] : [UInt8(ascii: "\n")]
        return Entry(bytes: Array(parts.joined(separator: separator)), documents: documents.count)
    }

    /// One document of a record as the format carries it. `number`: its place among the
    /// record's documents when evidence is split (each has an `_id` of its own).
    private static func part(for record: OutboxRecord, document: [UInt8], number: Int?, settings: HTTPSinkSettings) -> [UInt8] {
        switch settings.format {
        case .json, .jsonArray:
            return document
        case .ndjson:
            return oneLine(document)
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
            members.append(("sourcetype", .string(settings.sourcetype(for: record.kind))))
            if let index = settings.index(for: record.kind) { members.append(("index", .string(index))) }
            members.append(
                ("fields", .object([("tenant", .string(record.tenant)), ("event", .string(record.event)), ("kind", .string(record.kind.rawValue))])))
            var bytes = Array(JSONValue.object(members).serialized.utf8.dropLast())
            bytes += ",\"event\":".utf8
            bytes += oneLine(document)
            bytes.append(UInt8(ascii: "}"))
            return bytes
        case .elasticsearchBulk:
            // The same version of the same record always has the same `_id`: sent again, it
            // replaces itself (`index`) or is refused as already there (`create`, 409).
            let headline = record.headline
            var id = record.alertID + "_" + (headline.lastUpdateTime ?? record.receivedAt)
            if let number { id += "_" + String(number) }
            var metadata: [(String, JSONValue)] = [("_index", .string(settings.index(for: record.kind) ?? "")), ("_id", .string(id))]
            if let pipeline = settings.pipeline { metadata.append(("pipeline", .string(pipeline))) }
            let action = JSONValue.object([(settings.operation.rawValue, .object(metadata))])
            return Array(action.serialized.utf8) + [UInt8(ascii: "\n")] + oneLine(document)
        }
    }

    static func oneLine(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.contains(where: { $0 == 0x0A || $0 == 0x0D }) else { return bytes }
        return bytes.map { $0 == 0x0A || $0 == 0x0D ? UInt8(ascii: " ") : $0 }
    }
}
