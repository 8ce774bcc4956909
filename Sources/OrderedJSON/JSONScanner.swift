/// A validating RFC 8259 scanner that builds no tree: it checks a whole document byte by byte
/// (structure, numbers, escapes, UTF-8, nesting at most ``maximumDepth``) and reports where
/// things are, as byte ranges, so that what is only passed through is never decoded and
/// written out again.
///
/// ``document(arrayMember:collecting:limit:members:)`` is what reading a page of alerts needs:
/// the ranges of the elements of one array member of the top-level object (`value`), for each
/// element that is an object the ranges of the values of a few of its members, and the ranges
/// of a few top-level members (`@odata.nextLink`). Decoding a value is left to the caller
/// (``string(at:)``), for the few fields it uses.
public struct JSONScanner {
    /// Deepest nesting accepted; deeper documents are an error, never a stack overflow.
    public static let maximumDepth = 512

    /// One element of the scanned array.
    public struct Element: Sendable, Equatable {
        /// The element's bytes, from its first to its last character.
        public var range: Range<Int>
        /// Whether the element is an object (only objects have `members`).
        public var isObject: Bool
        /// For each collected member name (same order), the range of its value in the last
        /// occurrence of the name, or `nil`.
        public var members: [Range<Int>?]
        /// Why the element is not valid JSON (the rest of the document is); `nil` when it is.
        public var problem: String?

        public init(range: Range<Int>, isObject: Bool, members: [Range<Int>?], problem: String? = nil) {
            self.range = range
            self.isObject = isObject
            self.members = members
            self.problem = problem
        }
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0

    /// A scanner over `bytes`, which must stay valid while it is used.
    public init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    // MARK: Documents

    /// What ``document(arrayMember:collecting:limit:members:)`` found.
    public struct Document {
        /// The elements of the array member, or `nil` when it is absent.
        public var elements: [Element]?
        /// The value ranges of the document's other top-level members asked for (same order).
        public var members: [Range<Int>?]

        public init(elements: [Element]?, members: [Range<Int>?]) {
            self.elements = elements
            self.members = members
        }
    }

    /// Validates the whole document, which must be an object, and returns the elements of its
    /// array member `name` (nil when the member is absent; ``JSONParseError`` when it is not an
    /// array) and the value ranges of the document's top-level members named in `members`
    /// (such as `@odata.nextLink`), in one pass. For each element that is an object, the value
    /// ranges of its top-level members named in `collecting` are reported.
    ///
    /// More than `limit` elements is an error, found as soon as the next one starts (so a
    /// body of millions of tiny elements costs no more than `limit` of them).
    public mutating func document(
        arrayMember name: String, collecting names: [String], limit: Int = .max,
        members memberNames: [String] = []
    ) throws(JSONParseError) -> Document {
        let wanted = Array(name.utf8)
        let collected = names.map { Array($0.utf8) }
        let others = memberNames.map { Array($0.utf8) }
        var found = Document(elements: nil, members: [Range<Int>?](repeating: nil, count: others.count))
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { throw fail("the document is not a JSON object") }
        try object { (scanner: inout JSONScanner, key: Range<Int>) throws(JSONParseError) in
            if scanner.equals(key, wanted) {
                guard scanner.index < scanner.bytes.count, scanner.bytes[scanner.index] == UInt8(ascii: "[") else {
                    throw scanner.fail("\"\(name)\" is not an array")
                }
                found.elements = try scanner.array(collecting: collected, limit: limit)
            } else {
                let start = scanner.index
                try scanner.value()
                if let slot = others.firstIndex(where: { scanner.equals(key, $0) }) { found.members[slot] = start..<scanner.index }
            }
        }
        skipWhitespace()
        guard index == bytes.count else { throw fail("unexpected data after the document") }
        return found
    }

    /// Validates a whole document holding any JSON value.
    public mutating func validateDocument() throws(JSONParseError) {
        try value()
        skipWhitespace()
        guard index == bytes.count else { throw fail("unexpected data after the document") }
    }

    /// Validates the whole document, which must be an object, and returns the value ranges of
    /// its top-level members named in `names` (same order; the last occurrence of a name wins).
    public mutating func members(_ names: [String]) throws(JSONParseError) -> [Range<Int>?] {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { throw fail("the document is not a JSON object") }
        let result = try objectMembers(collecting: names.map { Array($0.utf8) })
        skipWhitespace()
        guard index == bytes.count else { throw fail("unexpected data after the document") }
        return result
    }

    /// The string at `range` (a JSON string literal, quotes included), decoded; `nil` when the
    /// value there is not a string. Only call it on ranges this scanner reported: they are valid.
    public func string(at range: Range<Int>) -> String? {
        guard range.count >= 2, bytes[range.lowerBound] == UInt8(ascii: "\"") else { return nil }
        let content = UnsafeBufferPointer(rebasing: bytes[(range.lowerBound + 1)..<(range.upperBound - 1)])
        guard content.contains(UInt8(ascii: "\\")) else { return String(decoding: content, as: UTF8.self) }
        var scalars = String.UnicodeScalarView()
        var position = 0
        var run = position
        func flush(_ end: Int) {
            if end > run {
                scalars.append(contentsOf: String(decoding: UnsafeBufferPointer(rebasing: content[run..<end]), as: UTF8.self).unicodeScalars)
            }
        }
        func hex4(_ at: Int) -> UInt32 {
            var value: UInt32 = 0
            for byte in content[at..<(at + 4)] { value = value * 16 + UInt32(Self.hexValue(byte) ?? 0) }
            return value
        }
        while position < content.count {
            guard content[position] == UInt8(ascii: "\\") else {
                position += 1
                continue
            }
            flush(position)
            let escape = content[position + 1]
            position += 2
            switch escape {
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var code = hex4(position)
                position += 4
                // A surrogate pair is one scalar; a lone surrogate (legal JSON text, no Unicode
                // scalar) decodes as U+FFFD. The bytes themselves are passed on unchanged.
                if (0xD800...0xDBFF).contains(code), content.count - position >= 6, content[position] == UInt8(ascii: "\\"),
                    content[position + 1] == UInt8(ascii: "u"), (0xDC00...0xDFFF).contains(hex4(position + 2))
                {
                    code = 0x10000 + ((code - 0xD800) << 10) + (hex4(position + 2) - 0xDC00)
                    position += 6
                }
                scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
            default: scalars.append(Unicode.Scalar(escape))  // \" \\ \/
            }
            run = position
        }
        flush(content.count)
        return String(scalars)
    }

    /// The text of the value at `range` when it is a number, else `nil`.
    public func number(at range: Range<Int>) -> String? {
        guard let first = range.first.map({ bytes[$0] }), first == UInt8(ascii: "-") || Self.isDigit(first) else { return nil }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    // MARK: Values

    private func fail(_ reason: String) -> JSONParseError {
        JSONParseError(offset: index, reason: reason)
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    private func equals(_ range: Range<Int>, _ name: [UInt8]) -> Bool {
        // A key's range includes its quotes; keys with escapes never equal a plain name.
        guard range.count == name.count + 2 else { return false }
        var offset = range.lowerBound + 1
        for byte in name {
            guard bytes[offset] == byte else { return false }
            offset += 1
        }
        return true
    }

    /// Validates one value starting at `index` (after whitespace).
    private mutating func value() throws(JSONParseError) {
        skipWhitespace()
        guard index < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): try object { (scanner: inout JSONScanner, _: Range<Int>) throws(JSONParseError) in try scanner.value() }
        case UInt8(ascii: "["): try array { (scanner: inout JSONScanner) throws(JSONParseError) in try scanner.value() }
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        default: try number()
        }
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        guard depth <= Self.maximumDepth else { throw fail("nesting deeper than \(Self.maximumDepth)") }
    }

    /// An object at `index`; `member` is called with the key's range and `index` at the value.
    private mutating func object(_ member: (inout JSONScanner, Range<Int>) throws(JSONParseError) -> Void) throws(JSONParseError) {
        try enter()
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let key = try string()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            index += 1
            skipWhitespace()
            try member(&self, key)
            skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end of input in an object") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "}") {
                index += 1
                depth -= 1
                return
            }
            throw fail("expected ',' or '}'")
        }
    }

    /// An object whose top-level member values named in `names` are reported.
    private mutating func objectMembers(collecting names: [[UInt8]]) throws(JSONParseError) -> [Range<Int>?] {
        try objectMembers(collecting: NameTable(names))
    }

    /// Names to collect, found by the length of a key first (one comparison at most per key
    /// when the names have different lengths).
    struct NameTable {
        let names: [[UInt8]]
        /// By key length (quotes included): the slot of the one name of that length, -1 for
        /// none, -2 for several (then compared one by one).
        let slotByKeyLength: [Int]
        init(_ names: [[UInt8]]) {
            self.names = names
            var table = [Int](repeating: -1, count: (names.map(\.count).max() ?? 0) + 3)
            for (slot, name) in names.enumerated() { table[name.count + 2] = table[name.count + 2] == -1 ? slot : -2 }
            slotByKeyLength = table
        }
    }

    private mutating func objectMembers(collecting table: NameTable) throws(JSONParseError) -> [Range<Int>?] {
        var found = [Range<Int>?](repeating: nil, count: table.names.count)
        try object { (scanner: inout JSONScanner, key: Range<Int>) throws(JSONParseError) in
            let start = scanner.index
            try scanner.value()
            guard key.count < table.slotByKeyLength.count else { return }
            let slot = table.slotByKeyLength[key.count]
            if slot >= 0 {
                if scanner.equals(key, table.names[slot]) { found[slot] = start..<scanner.index }
            } else if slot == -2, let slot = table.names.firstIndex(where: { scanner.equals(key, $0) }) {
                found[slot] = start..<scanner.index
            }
        }
        return found
    }

    /// An array at `index`; `element` is called with `index` at each element.
    private mutating func array(_ element: (inout JSONScanner) throws(JSONParseError) -> Void) throws(JSONParseError) {
        try enter()
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return
        }
        while true {
            skipWhitespace()
            try element(&self)
            skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end of input in an array") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "]") {
                index += 1
                depth -= 1
                return
            }
            throw fail("expected ',' or ']'")
        }
    }

    /// The array at `index`, element by element. An element that is not valid JSON (invalid
    /// UTF-8, nesting deeper than ``maximumDepth``...) but whose end can still be found is
    /// reported with its ``Element/problem`` and the array goes on; if its end cannot be found
    /// (a truncated document), the whole document is refused.
    private mutating func array(collecting names: [[UInt8]], limit: Int) throws(JSONParseError) -> [Element] {
        var elements: [Element] = []
        let names = NameTable(names)
        try array { (scanner: inout JSONScanner) throws(JSONParseError) in
            guard elements.count < limit else { throw scanner.fail("more than \(limit) elements") }
            let start = scanner.index
            let depth = scanner.depth
            guard start < scanner.bytes.count else { throw scanner.fail("unexpected end of input") }
            do throws(JSONParseError) {
                if scanner.bytes[start] == UInt8(ascii: "{") {
                    let members = try scanner.objectMembers(collecting: names)
                    elements.append(Element(range: start..<scanner.index, isObject: true, members: members))
                } else {
                    try scanner.value()
                    elements.append(Element(range: start..<scanner.index, isObject: false, members: []))
                }
            } catch {
                guard let end = scanner.endOfElement(from: start) else { throw error }
                scanner.index = end
                scanner.depth = depth
                elements.append(Element(range: start..<end, isObject: false, members: [], problem: error.reason))
            }
        }
        return elements
    }

    /// Where the array element at `start` ends, found without validating it: strings are
    /// skipped to their closing quote (whatever bytes they hold), brackets counted (no
    /// recursion, so no depth limit). `nil` when the document ends first.
    private func endOfElement(from start: Int) -> Int? {
        var index = start
        var depth = 0
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\""):
                index += 1
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1
                }
                guard index < bytes.count else { return nil }
                index += 1
                if depth == 0 { return index }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                index += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                // At depth 0 this closes the array the element is in: a scalar ends before it.
                if depth == 0 { return index > start ? trimmedEnd(start, index) : nil }
                depth -= 1
                index += 1
                if depth == 0 { return index }
            case UInt8(ascii: ","):
                if depth == 0 { return index > start ? trimmedEnd(start, index) : nil }
                index += 1
            default:
                index += 1
            }
        }
        return nil
    }

    /// `end` moved back over whitespace, not before `start + 1`.
    private func trimmedEnd(_ start: Int, _ end: Int) -> Int {
        var end = end
        while end > start + 1, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[end - 1]) { end -= 1 }
        return end
    }

    private mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let count = word.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw fail("unexpected end of input") }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] {
            throw fail("invalid value")
        }
        index += count
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte &- UInt8(ascii: "0") < 10
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private mutating func number() throws(JSONParseError) {
        func digits() -> Int {
            let from = index
            while index < bytes.count, Self.isDigit(bytes[index]) { index += 1 }
            return index - from
        }
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        let integerStart = index
        guard digits() > 0 else { throw fail("invalid value") }
        if bytes[integerStart] == UInt8(ascii: "0"), index - integerStart > 1 { throw fail("leading zero in a number") }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { throw fail("digits expected after '.'") }
        }
        if index < bytes.count, bytes[index] | 0x20 == UInt8(ascii: "e") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw fail("digits expected in the exponent") }
        }
    }

    /// A string at `index`: escapes, control characters and UTF-8 checked; returns its range,
    /// quotes included.
    private mutating func string() throws(JSONParseError) -> Range<Int> {
        let start = index
        index += 1
        while index < bytes.count {
            // Eight plain bytes at a time (most of an alert is ASCII text without escapes).
            if let base = bytes.baseAddress {
                while bytes.count - index >= 8 {
                    let special = Self.notPlain(UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self).littleEndian)
                    guard special == 0 else {
                        index += special.trailingZeroBitCount / 8  // the first byte that is not plain
                        break
                    }
                    index += 8
                }
            }
            guard index < bytes.count else { break }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return start..<index
            }
            if byte == UInt8(ascii: "\\") {
                try escape()
            } else if byte < 0x20 {
                throw fail("control character in a string")
            } else if byte < 0x80 {
                index += 1
            } else {
                try utf8Sequence()
            }
        }
        throw fail("unterminated string")
    }

    /// Which of eight bytes (little-endian) end a string or need a closer look: `"`, `\`, a
    /// control character, anything outside ASCII. A SWAR test: the high bit of such a byte is
    /// set; a byte above one of them may be flagged too (a borrow), so only the lowest flag is
    /// exact, and it is the one the scanner uses. Zero when all eight are plain.
    @inline(__always)
    static func notPlain(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        func zeroBytes(_ value: UInt64) -> UInt64 { (value &- ones) & ~value & highs }
        let quote = zeroBytes(word ^ (ones &* 0x22))
        let backslash = zeroBytes(word ^ (ones &* 0x5C))
        let control = (word &- ones &* 0x20) & ~word & highs
        return quote | backslash | control | (word & highs)
    }

    private mutating func escape() throws(JSONParseError) {
        guard index + 1 < bytes.count else { throw fail("unterminated string") }
        switch bytes[index + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
            UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            index += 2
        case UInt8(ascii: "u"):
            // Any four hex digits: RFC 8259's grammar allows a lone surrogate (`\udc00`), and
            // the API may send one; it is passed on as it came.
            index += 2
            _ = try hex4()
        default:
            throw fail("invalid escape")
        }
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw fail("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let digit = Self.hexValue(bytes[index]) else { throw fail("invalid \\u escape") }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    /// One multi-byte UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF).
    private mutating func utf8Sequence() throws(JSONParseError) {
        let lead = bytes[index]
        let length: Int
        var lower: UInt8 = 0x80, upper: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upper = 0x9F
        case 0xF0: length = 4; lower = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upper = 0x8F
        default: throw fail("invalid UTF-8 in a string")
        }
        guard bytes.count - index >= length, (lower...upper).contains(bytes[index + 1]) else { throw fail("invalid UTF-8 in a string") }
        for offset in 2..<max(2, length) where bytes[index + offset] & 0xC0 != 0x80 {
            throw fail("invalid UTF-8 in a string")
        }
        index += length
    }
}
