/// Refuses, with its line, what the TOML parser underneath (toml++ through TOMLKit) would not
/// refuse but stop the process on, in an assertion: found by fuzzing the loader.
/// - A control character other than tab and line ends: TOML allows none anywhere, not even in
///   a string (a NUL in a key tripped an assertion).
/// - A table header whose name starts with a character no key can start with (`[.service]`,
///   `[/x]`, `[[@sink]]`, `[é]`): toml++ asserts where it should report. Headers are found
///   lexically: at the start of a line, outside strings, comments, arrays and inline tables.
enum TOMLPrecheck {
    /// The first problem: its line and what is wrong; nil when the parser may have the text.
    static func problem(in source: String) -> (line: Int, message: String)? {
        let bytes = Array(source.utf8)
        var index = 0
        var line = 1
        var nesting = 0  // open arrays and inline tables of values
        var lineStart = true
        func byte(_ at: Int) -> UInt8? { at < bytes.count ? bytes[at] : nil }
        var controlLine = 1
        for value in bytes {
            if value == UInt8(ascii: "\n") { controlLine += 1; continue }
            if value < 0x20 && value != UInt8(ascii: "\t") && value != UInt8(ascii: "\r") || value == 0x7F {
                let code = String(value, radix: 16, uppercase: true)
                return (
                    controlLine, "control character U+\(String(repeating: "0", count: 4 - code.count) + code) (only tab and line ends are allowed)"
                )
            }
        }
        while index < bytes.count {
            let current = bytes[index]
            if current == UInt8(ascii: "\n") {
                line += 1
                lineStart = true
                index += 1
                continue
            }
            if current == UInt8(ascii: " ") || current == UInt8(ascii: "\t") || current == UInt8(ascii: "\r") {
                index += 1
                continue
            }
            if lineStart, nesting == 0, current == UInt8(ascii: "[") {
                var name = index + 1
                if byte(name) == UInt8(ascii: "[") { name += 1 }
                while byte(name) == UInt8(ascii: " ") || byte(name) == UInt8(ascii: "\t") { name += 1 }
                guard let first = byte(name), first != UInt8(ascii: "\n"), first != UInt8(ascii: "\r") else {
                    return (line, "a table header is not closed on its line")
                }
                if !Self.mayStartKey(first) {
                    return (
                        line,
                        "a table name cannot start with \(first < 0x80 ? "'\(Character(Unicode.Scalar(first)))'" : "a non-ASCII character") (a key starts with a letter, a digit, -, _ or a quote)"
                    )
                }
                // The rest of the header: to its closing bracket, past quoted names.
                index = name
                while let next = byte(index), next != UInt8(ascii: "\n"), next != UInt8(ascii: "]") {
                    index = next == UInt8(ascii: "\"") || next == UInt8(ascii: "'") ? Self.endOfString(bytes, index, &line) : index + 1
                }
                while byte(index) == UInt8(ascii: "]") { index += 1 }
                lineStart = false
                continue
            }
            lineStart = false
            switch current {
            case UInt8(ascii: "\""), UInt8(ascii: "'"): index = Self.endOfString(bytes, index, &line)
            case UInt8(ascii: "#"): while let next = byte(index), next != UInt8(ascii: "\n") { index += 1 }
            case UInt8(ascii: "["), UInt8(ascii: "{"): nesting += 1; index += 1
            case UInt8(ascii: "]"), UInt8(ascii: "}"): nesting = max(0, nesting - 1); index += 1
            default: index += 1
            }
        }
        return nil
    }

    private static func mayStartKey(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") || byte == UInt8(ascii: "]")
    }

    /// Past the string starting at `start` (basic or literal, single or multi-line); counts lines.
    private static func endOfString(_ bytes: [UInt8], _ start: Int, _ line: inout Int) -> Int {
        let quote = bytes[start]
        let triple = start + 2 < bytes.count && bytes[start + 1] == quote && bytes[start + 2] == quote
        var index = start + (triple ? 3 : 1)
        while index < bytes.count {
            let current = bytes[index]
            if current == UInt8(ascii: "\\"), quote == UInt8(ascii: "\"") { index += 2; continue }
            if current == UInt8(ascii: "\n") {
                guard triple else { return index }  // an unterminated string: the parser says so
                line += 1
            }
            if current == quote, !triple || (index + 2 < bytes.count && bytes[index + 1] == quote && bytes[index + 2] == quote) {
                return index + (triple ? 3 : 1)
            }
            index += 1
        }
        return index
    }
}
