import DefenderAPI
import Foundation

/// A place in the outbox log: the segment file (named after the sequence number of its first
/// record), a byte offset in it, and the sequence number of the record that starts there.
public struct LogPosition: Sendable, Equatable {
    public var segment: Int64
    public var offset: Int64
    public var sequence: Int64
}

/// The outbox's alert bytes: append-only segment files in `state_directory/outbox/`, each alert
/// written once, for every sink, next to the SQLite database that holds what is committed (the
/// log's end, one read position per sink).
///
/// An append is written and fdatasync'd before the SQLite transaction that records the new end
/// commits; bytes past the committed end (a crash or a failed commit in between) are cut off
/// when the log is opened, so a reader never sees an alert that was not admitted. Segments
/// before every sink's position are deleted.
///
/// A record (integers little-endian): u32 length of what follows, u64 sequence number, u8 flags
/// (bit 0: the event is `updated`, else `created`; bit 1: a headline follows the time
/// received; bit 2: the record is an incident, else an alert), u16 number of sinks then per sink u16 length and name, u32 length and tenant,
/// u32 length and alert id, u32 length and time received, [the headline: u8 number of fields,
/// then per field u8 tag (``HeadlineTag``), u32 length and text], then the alert's bytes.
/// A record has its headline when one of its sinks shows it (decoded at admission); else a
/// sink that asks reads it from the alert's bytes (``OutboxRecord/headline``), and a sink
/// that writes the bytes as they came pays nothing for it.
struct OutboxLog: Sendable {
    let directory: String
    /// A segment is closed once it holds this much; the next append starts a new file.
    let segmentSize: Int64

    static let first = LogPosition(segment: 1, offset: 0, sequence: 1)
    /// Records of other sinks one read skips at most before it returns (so that it is bounded).
    private static let chunkSize = 4 << 20
    /// Bytes encoded before they are written, when appending.
    private static let writeSize = 1 << 20

    init(directory: String, segmentSize: Int64 = 64 << 20) throws(StateError) {
        self.directory = directory
        self.segmentSize = segmentSize
        if mkdir(directory, 0o700) != 0, errno != EEXIST {
            throw StateError.system("cannot create the outbox directory \(directory)", errno: errno)
        }
        try Self.syncDirectory((directory as NSString).deletingLastPathComponent)
    }

    func path(of segment: Int64) -> String {
        let digits = String(segment)
        return "\(directory)/\(String(repeating: "0", count: max(0, 20 - digits.count)))\(digits).log"
    }

    /// The segments present, by first sequence number.
    func segments() throws(StateError) -> [Int64] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw StateError(.unavailable, "cannot list the outbox directory \(directory): \(error.localizedDescription)")
        }
        return names.compactMap { name in
            guard name.hasSuffix(".log"), name.count == 24 else { return nil }
            return Int64(name.dropLast(4))
        }.sorted()
    }

    /// Makes the files agree with the committed state: cuts the current segment back to the
    /// committed end, deletes segments started after it (never committed) and before `oldest`
    /// (delivered everywhere). A segment shorter than what was committed is damage.
    func recover(end: LogPosition, oldest: Int64) throws(StateError) {
        for segment in try segments() where segment > end.segment {
            unlink(path(of: segment))
        }
        let current = path(of: end.segment)
        var info = stat()
        if stat(current, &info) != 0 {
            guard end.offset == 0 else {
                throw StateError(.corrupt, "the outbox segment \(current) is missing; \(end.sequence - 1) alerts were committed up to it")
            }
        } else if info.st_size < end.offset {
            throw StateError(.corrupt, "the outbox segment \(current) holds \(info.st_size) bytes, fewer than the \(end.offset) committed")
        } else if info.st_size > end.offset {
            try withDescriptor(current, flags: O_WRONLY) { fd throws(StateError) in
                guard ftruncate(fd, off_t(end.offset)) == 0, fsync(fd) == 0 else {
                    throw StateError.system("cannot cut the outbox segment \(current) back to its committed end", errno: errno)
                }
            }
        }
        try removeSegments(before: min(oldest, end.segment))
    }

    /// One alert to append: what a record holds besides its sequence number.
    struct Entry: Sendable {
        var tenant: String
        var alertID: String
        var event: String
        var receivedAt: String
        /// What sinks show, decoded at admission (nil: read from the payload if a sink asks).
        var headline: AlertHeadline?
        var payload: Data
        var sinks: [String]
        var kind: RecordKind = .alert
    }

    /// The fields of a stored headline.
    private enum HeadlineTag: UInt8 {
        case severity = 1, title, host, status, lastUpdateTime
    }

    private static let updatedFlag: UInt8 = 1
    private static let headlineFlag: UInt8 = 2
    private static let incidentFlag: UInt8 = 4

    /// Appends records for `entries` (numbered from `end.sequence`) after the committed `end`,
    /// on disk when it returns; returns the new end. On failure nothing past `end` remains.
    /// Records are encoded and written about a megabyte at a time: memory stays that of the
    /// alerts, however many there are.
    func append(_ entries: [Entry], after end: LogPosition) throws(StateError) -> LogPosition {
        let start = end.offset >= segmentSize ? LogPosition(segment: end.sequence, offset: 0, sequence: end.sequence) : end
        let file = path(of: start.segment)
        let created = start.offset == 0
        // A new segment starts empty (a file left by an append that failed is overwritten).
        let fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC | (created ? O_TRUNC : 0), 0o600)
        guard fd >= 0 else { throw StateError.system("cannot open the outbox segment \(file)", errno: errno) }
        defer { close(fd) }
        var offset = start.offset
        var buffer: [UInt8] = []
        buffer.reserveCapacity(Self.writeSize + (entries.first?.payload.count ?? 0) + 256)
        /// Writes the buffer; the errno of a failure.
        func flush() -> Int32? {
            let failure: Int32? = buffer.withUnsafeBytes { bytes in
                var written = 0
                while written < bytes.count {
                    let n = pwrite(fd, bytes.baseAddress! + written, bytes.count - written, off_t(offset) + off_t(written))
                    if n < 0 {
                        if errno == EINTR { continue }
                        return errno
                    }
                    written += n
                }
                return nil
            }
            offset += Int64(buffer.count)
            buffer.removeAll(keepingCapacity: true)
            return failure
        }
        var failure: Int32?
        for (index, entry) in entries.enumerated() where failure == nil {
            Self.encode(sequence: start.sequence + Int64(index), entry, into: &buffer)
            if buffer.count >= Self.writeSize { failure = flush() }
        }
        if failure == nil { failure = flush() }
        if failure == nil, fdatasync(fd) != 0 { failure = errno }
        if let failure {
            if created { unlink(file) } else { _ = ftruncate(fd, off_t(start.offset)) }
            throw StateError.system("cannot write the outbox segment \(file)", errno: failure)
        }
        if created { try Self.syncDirectory(directory) }
        return LogPosition(segment: start.segment, offset: offset, sequence: start.sequence + Int64(entries.count))
    }

    /// Undoes an append whose commit failed: the log ends at `end` again.
    func discard(after end: LogPosition) {
        for segment in (try? segments()) ?? [] where segment > end.segment {
            unlink(path(of: segment))
        }
        let fd = open(path(of: end.segment), O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = ftruncate(fd, off_t(end.offset))
        close(fd)
    }

    /// Deletes the segments that start before `segment`.
    func removeSegments(before segment: Int64) throws(StateError) {
        for old in try segments() where old < segment {
            unlink(path(of: old))
        }
    }

    /// The records for `sink` from `start` up to the committed `end`: at most `limit`, and at
    /// most about one chunk of bytes read; returns them and where reading stopped.
    func read(
        sink: String, from start: LogPosition, to end: LogPosition, limit: Int
    ) throws(StateError) -> (records: [OutboxRecord], next: LogPosition) {
        var position = start
        var records: [OutboxRecord] = []
        records.reserveCapacity(Int(min(Int64(limit), max(0, end.sequence - start.sequence))))
        var scanned = 0
        let wanted = Array(sink.utf8)
        while records.count < limit, position.sequence < end.sequence, scanned < Self.chunkSize {
            let file = path(of: position.segment)
            let stop = try position.segment == end.segment ? end.offset : size(of: file)
            guard position.offset < stop else {
                // A closed segment read to its end: the next one starts with the next record.
                guard position.segment < end.segment else { throw damaged(file, at: position.offset, "ends before the committed end") }
                position = LogPosition(segment: position.sequence, offset: 0, sequence: position.sequence)
                continue
            }
            var chunk = try pread(file, at: position.offset, count: Int(min(stop - position.offset, Int64(Self.chunkSize - scanned))))
            if let needed = Self.firstRecordLength(chunk), needed > chunk.count {
                guard needed <= stop - position.offset else { throw damaged(file, at: position.offset, "a record runs past the end") }
                chunk = try pread(file, at: position.offset, count: needed)
            }
            var cursor = 0
            while records.count < limit, let next = Self.recordEnd(chunk, from: cursor) {
                if let record = try Self.decode(chunk[cursor..<next], sequence: position.sequence, sink: sink, wanted: wanted) {
                    records.append(record)
                }
                position.offset += Int64(next - cursor)
                position.sequence += 1
                cursor = next
            }
            if cursor == 0 { throw damaged(file, at: position.offset, "a record cannot be read") }
            scanned += cursor
        }
        // At the end of a closed segment, start the next one: the closed one can then go.
        if position.segment < end.segment, try position.offset >= size(of: path(of: position.segment)) {
            position = LogPosition(segment: position.sequence, offset: 0, sequence: position.sequence)
        }
        return (records, position)
    }

    // MARK: Encoding

    /// Appends one record to `bytes`.
    static func encode(sequence: Int64, _ entry: Entry, into bytes: inout [UInt8]) {
        let lengthAt = bytes.count
        append(UInt32(0), to: &bytes)
        append(UInt64(bitPattern: sequence), to: &bytes)
        // `headline.map` rather than `headline == nil`: Optional's `==` copies the headline first.
        let headline = entry.headline.map { _ in headlineFlag } ?? 0
        append((entry.event == "updated" ? updatedFlag : 0) | headline | (entry.kind == .incident ? incidentFlag : 0), to: &bytes)
        append(UInt16(entry.sinks.count), to: &bytes)
        for sink in entry.sinks {
            append(UInt16(sink.utf8.count), to: &bytes)
            bytes.append(contentsOf: sink.utf8)
        }
        appendText(entry.tenant, to: &bytes)
        appendText(entry.alertID, to: &bytes)
        appendText(entry.receivedAt, to: &bytes)
        if let headline = entry.headline {
            let fields: [(HeadlineTag, String?)] = [
                (.severity, headline.givenSeverity), (.title, headline.givenTitle), (.host, headline.host),
                (.status, headline.status), (.lastUpdateTime, headline.lastUpdateTime),
            ]
            append(UInt8(fields.count(where: { $0.1 != nil })), to: &bytes)
            for case let (tag, text?) in fields {
                append(tag.rawValue, to: &bytes)
                appendText(text, to: &bytes)
            }
        }
        entry.payload.withUnsafeBytes { bytes.append(contentsOf: $0) }
        let length = UInt32(bytes.count - lengthAt - 4)
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: length.littleEndian, toByteOffset: lengthAt, as: UInt32.self) }
    }

    /// Appends a u32 length and the text's UTF-8.
    private static func appendText(_ text: String, to bytes: inout [UInt8]) {
        append(UInt32(text.utf8.count), to: &bytes)
        bytes.append(contentsOf: text.utf8)
    }

    /// Appends an integer, little-endian.
    private static func append<Integer: FixedWidthInteger>(_ value: Integer, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    private static func integer(_ bytes: ArraySlice<UInt8>, at index: Int, bytes count: Int) -> UInt64 {
        var value: UInt64 = 0
        for offset in 0..<count { value |= UInt64(bytes[index + offset]) << (8 * offset) }
        return value
    }

    /// The whole length of the record at the start of `chunk`, when its length field is there.
    private static func firstRecordLength(_ chunk: [UInt8]) -> Int? {
        chunk.count >= 4 ? Int(integer(chunk[...], at: 0, bytes: 4)) + 4 : nil
    }

    /// Where the record at `start` ends, when all of it is in `chunk`.
    private static func recordEnd(_ chunk: [UInt8], from start: Int) -> Int? {
        guard chunk.count - start >= 4 else { return nil }
        let end = start + 4 + Int(integer(chunk[...], at: start, bytes: 4))
        return end <= chunk.count ? end : nil
    }

    /// The record, when it is for `sink` (nil when it is for other sinks only).
    private static func decode(_ record: ArraySlice<UInt8>, sequence: Int64, sink: String, wanted: [UInt8]) throws(StateError) -> OutboxRecord? {
        var index = record.startIndex + 4
        func need(_ count: Int) throws(StateError) {
            guard record.endIndex - index >= count else { throw StateError(.corrupt, "an outbox record is cut short (sequence \(sequence))") }
        }
        func take(_ count: Int) throws(StateError) -> UInt64 {
            try need(count)
            defer { index += count }
            return integer(record, at: index, bytes: count)
        }
        func text() throws(StateError) -> String {
            let count = Int(try take(4))
            try need(count)
            defer { index += count }
            return String(decoding: record[index..<index + count], as: UTF8.self)
        }
        guard Int64(bitPattern: try take(8)) == sequence else {
            throw StateError(.corrupt, "an outbox record is out of sequence (expected \(sequence))")
        }
        let flags = UInt8(try take(1))
        let event = flags & updatedFlag != 0 ? "updated" : "created"
        let kind: RecordKind = flags & incidentFlag != 0 ? .incident : .alert
        var targeted = false
        for _ in 0..<Int(try take(2)) {
            let count = Int(try take(2))
            try need(count)
            if !targeted, record[index..<index + count].elementsEqual(wanted) { targeted = true }
            index += count
        }
        let tenant = try text()
        let alertID = try text()
        let receivedAt = try text()
        guard targeted else { return nil }
        guard flags & headlineFlag != 0 else {
            return OutboxRecord(
                id: sequence, sink: sink, tenant: tenant, alertID: alertID, event: event, receivedAt: receivedAt,
                payloadBytes: Array(record[index...]), kind: kind)
        }
        var headline = AlertHeadline()
        for _ in 0..<Int(try take(1)) {
            let tag = HeadlineTag(rawValue: UInt8(try take(1)))
            let value = try text()
            switch tag {
            case .severity: headline.givenSeverity = value
            case .title: headline.givenTitle = value
            case .host: headline.host = value
            case .status: headline.status = value
            case .lastUpdateTime: headline.lastUpdateTime = value
            case nil: continue  // a field of a later version
            }
        }
        return OutboxRecord(
            id: sequence, sink: sink, tenant: tenant, alertID: alertID, event: event, receivedAt: receivedAt,
            headline: headline, payloadBytes: Array(record[index...]), kind: kind)
    }

    // MARK: Files

    private func damaged(_ file: String, at offset: Int64, _ what: String) -> StateError {
        StateError(.corrupt, "the outbox segment \(file) is damaged at byte \(offset): \(what)")
    }

    private func size(of file: String) throws(StateError) -> Int64 {
        var info = stat()
        guard stat(file, &info) == 0 else { throw StateError(.corrupt, "the outbox segment \(file) is missing: \(String(cString: strerror(errno)))") }
        return Int64(info.st_size)
    }

    private func pread(_ file: String, at offset: Int64, count: Int) throws(StateError) -> [UInt8] {
        try withDescriptor(file, flags: O_RDONLY) { fd throws(StateError) in
            var failure: Int32 = 0
            let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                while initialized < count {
                    let n = Glibc.pread(fd, buffer.baseAddress! + initialized, count - initialized, off_t(offset) + off_t(initialized))
                    if n < 0, errno == EINTR { continue }
                    if n <= 0 {
                        failure = n < 0 ? errno : EIO
                        return
                    }
                    initialized += n
                }
            }
            guard failure == 0 else { throw StateError.system("cannot read the outbox segment \(file)", errno: failure) }
            return bytes
        }
    }

    private func withDescriptor<T>(_ file: String, flags: Int32, _ body: (Int32) throws(StateError) -> T) throws(StateError) -> T {
        let fd = open(file, flags | O_CLOEXEC)
        guard fd >= 0 else { throw StateError.system("cannot open the outbox segment \(file)", errno: errno) }
        defer { close(fd) }
        return try body(fd)
    }

    /// Makes a directory's entries durable (a new segment must not vanish in a power loss).
    static func syncDirectory(_ directory: String) throws(StateError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0, fsync(fd) == 0 else {
            let code = errno
            if fd >= 0 { close(fd) }
            throw StateError.system("cannot sync the directory \(directory)", errno: code)
        }
        close(fd)
    }
}
