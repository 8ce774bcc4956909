/// The frames of RELP, rsyslog's Reliable Event Logging Protocol (rsyslog.com/doc/relp.html,
/// librelp's `doc/relp.html`): `TXNR SP COMMAND SP DATALEN [SP DATA] LF`, where TXNR is the
/// transaction number (1 to 999,999,999, then 1 again), DATALEN the number of bytes of DATA,
/// and every command is answered by an `rsp` frame with the same number whose data starts
/// with a status code (`200 OK`). The server may announce `0 serverclose 0` before it goes.
struct RELPFrame: Equatable, Sendable {
    var transaction: Int
    var command: String
    var data: [UInt8]

    static let maxTransaction = 999_999_999
    /// The largest DATALEN accepted from a receiver (answers are short).
    static let maxAnswer = 128 * 1024

    /// The frame's bytes.
    var bytes: [UInt8] {
        var bytes = Array("\(transaction) \(command) \(data.count)".utf8)
        bytes.reserveCapacity(bytes.count + data.count + 2)
        if !data.isEmpty {
            bytes.append(UInt8(ascii: " "))
            bytes += data
        }
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    /// The status code of an `rsp` frame's data (`200` of `200 OK`), if it starts with one.
    var status: Int? {
        let code = data.prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        guard code.count == 3 else { return nil }
        return Int(String(decoding: code, as: UTF8.self))
    }

    /// The data as text (for messages).
    var text: String { String(decoding: data.prefix(500), as: UTF8.self) }

    /// The transaction number after `transaction`.
    static func next(after transaction: Int) -> Int {
        transaction >= maxTransaction ? 1 : transaction + 1
    }

    enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        var description: String {
            switch self {
            case .malformed(let reason): "malformed RELP frame from the receiver: \(reason)"
            }
        }
    }

    /// Takes one whole frame off the front of `buffer`; `nil` when more bytes are needed.
    static func parse(_ buffer: inout [UInt8]) throws(ParseError) -> RELPFrame? {
        var index = 0
        func field(_ name: String, maxLength: Int) throws(ParseError) -> String? {
            let start = index
            while index < buffer.count, buffer[index] != UInt8(ascii: " "), buffer[index] != UInt8(ascii: "\n") {
                index += 1
                if index - start > maxLength { throw .malformed("\(name) longer than \(maxLength) bytes") }
            }
            guard index < buffer.count else { return nil }
            guard index > start else { throw .malformed("empty \(name)") }
            return String(decoding: buffer[start..<index], as: UTF8.self)
        }
        guard let number = try field("TXNR", maxLength: 9) else { return nil }
        guard let transaction = Int(number), transaction >= 0 else { throw .malformed("TXNR \"\(number)\" is not a number") }
        guard buffer[index] == UInt8(ascii: " ") else { throw .malformed("no command after TXNR \(transaction)") }
        index += 1
        guard let command = try field("command", maxLength: 32) else { return nil }
        guard buffer[index] == UInt8(ascii: " ") else { throw .malformed("no DATALEN after \(command)") }
        index += 1
        guard let lengthText = try field("DATALEN", maxLength: 9) else { return nil }
        guard let length = Int(lengthText), length >= 0, length <= maxAnswer else {
            throw .malformed("DATALEN \"\(lengthText)\" is not a number up to \(maxAnswer)")
        }
        var data: [UInt8] = []
        if length > 0 {
            guard buffer[index] == UInt8(ascii: " ") else { throw .malformed("no data after DATALEN \(length)") }
            index += 1
            guard buffer.count >= index + length + 1 else { return nil }
            data = Array(buffer[index..<index + length])
            index += length
        }
        guard index < buffer.count else { return nil }
        guard buffer[index] == UInt8(ascii: "\n") else { throw .malformed("no line end after frame \(transaction)") }
        buffer.removeFirst(index + 1)
        return RELPFrame(transaction: transaction, command: command, data: data)
    }
}
