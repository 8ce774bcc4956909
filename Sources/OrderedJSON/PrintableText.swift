/// Text from outside (an alert's title, a receiver's answer, an API's message) made safe for
/// what reads it next: a person's terminal, a log viewer, a line-based parser.
///
/// Unsafe are the characters that act instead of showing: the C0 controls (U+0000–U+001F:
/// NUL, ESC that starts terminal escape sequences, VT, FF, line breaks), DEL (U+007F), the C1
/// controls (U+0080–U+009F, NEL U+0085 and the one-character CSI U+009B among them), the line
/// and paragraph separators (U+2028, U+2029, which some readers take as line ends), and the
/// bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) that make
/// text display in another order than it reads (Unicode Technical Report #36 §2.1,
/// CVE-2021-42574 "Trojan Source"), and the left-to-right and right-to-left marks (U+200E,
/// U+200F). Each becomes `\uXXXX` (lower-case hex, as JSON writes it), so what it was stays
/// visible.
///
/// Two uses: ``escaped(_:keeping:)`` and ``escapedJSON(_:)`` for the formats a sink writes
/// (each format keeps what it needs), and ``shown(_:limit:escapingBackslash:)`` for text shown
/// to a person (a command's output, a message): every unsafe scalar escaped, the length bounded.
public enum PrintableText {
    /// Whether `scalar` must not reach a reader as it is (see the type's description).
    public static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }

    /// `\u` and the scalar's code as four lower-case hex digits (every unsafe scalar is below U+10000).
    public static func unicodeEscape(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16)
        return "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }

    /// `text` with every unsafe scalar, except those in `keeping` (what the format itself needs
    /// or escapes its own way), written as `\uXXXX`. Nothing else changes: a format that must
    /// tell such an escape from a backslash in the text escapes its backslashes first.
    public static func escaped(_ text: String, keeping: Set<Unicode.Scalar> = []) -> String {
        guard text.unicodeScalars.contains(where: { isUnsafe($0) && !keeping.contains($0) }) else { return text }
        var escaped = ""
        escaped.unicodeScalars.reserveCapacity(text.unicodeScalars.count + 16)
        for scalar in text.unicodeScalars {
            if isUnsafe(scalar), !keeping.contains(scalar) {
                escaped += unicodeEscape(scalar)
            } else {
                escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    /// `text` for a person: every unsafe scalar written as `\uXXXX`, line breaks and tabs
    /// included (the caller decides where lines end), and a backslash as `\\` so that an
    /// escape in the text cannot pass for one of ours; cut after `limit` scalars of output with
    /// "…".
    ///
    /// Without `escapingBackslash` the result can be shown again unchanged (a reason that
    /// passes through several messages is not doubled at each): for the daemon's own messages,
    /// which only need to be printable and on one line.
    public static func shown(_ text: some StringProtocol, limit: Int = 1_000, escapingBackslash: Bool = true) -> String {
        // Every log line passes here: the common text, printable and short, is not rebuilt.
        var scalars = 0
        if !text.unicodeScalars.contains(where: { scalar in
            scalars += 1
            return scalars > limit || isUnsafe(scalar) || escapingBackslash && scalar == "\\"
        }) {
            return String(text)
        }
        var output = ""
        var length = 0
        for scalar in text.unicodeScalars {
            let piece: String
            if isUnsafe(scalar) {
                piece = unicodeEscape(scalar)
            } else if escapingBackslash, scalar == "\\" {
                piece = "\\\\"
            } else {
                piece = String(Character(scalar))
            }
            guard length + piece.unicodeScalars.count <= limit else {
                return output + "…"
            }
            output += piece
            length += piece.unicodeScalars.count
        }
        return output
    }

    /// Bytes from outside (a response body) shown as text: invalid UTF-8 becomes U+FFFD, only
    /// the first `limit` bytes are read, and backslashes stay as they are.
    public static func shown(bytes: some Collection<UInt8>, limit: Int) -> String {
        shown(String(decoding: bytes.prefix(limit), as: UTF8.self), limit: 6 * limit, escapingBackslash: false) + (bytes.count > limit ? "…" : "")
    }

    /// Whether `text` shows as it is: nothing to escape, not longer than `limit`.
    public static func isPrintable(_ text: some StringProtocol, limit: Int = 1_000) -> Bool {
        text.unicodeScalars.count <= limit && !text.unicodeScalars.contains { isUnsafe($0) || $0 == "\\" }
    }

    /// JSON text (UTF-8) with every unsafe scalar but tab, line feed and carriage return written
    /// as `\uXXXX`. In valid JSON those three can only be whitespace between tokens, and every
    /// other unsafe scalar only sits inside a string (RFC 8259 §2, §7), where `\uXXXX` stands for
    /// the same character: the JSON's value does not change, only how it is written. Returns
    /// `json` itself when nothing needs escaping (the common case: a single pass, no copy).
    public static func escapedJSON(_ json: [UInt8]) -> [UInt8] {
        guard let first = firstUnsafeJSONByte(json) else { return json }
        var output = Array(json[..<first])
        output.reserveCapacity(json.count + 32)
        var index = first
        while index < json.count {
            let (scalar, length) = unsafeScalar(in: json, at: index)
            if let scalar {
                output += unicodeEscape(scalar).utf8
                index += length
            } else {
                output.append(json[index])
                index += 1
            }
        }
        return output
    }

    private static func firstUnsafeJSONByte(_ bytes: [UInt8]) -> Int? {
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            // Only bytes below 0x20, 0x7F, 0xC2 (C1) and 0xE2 (U+2028...) can start an unsafe scalar.
            if byte < 0x20 || byte == 0x7F || byte == 0xC2 || byte == 0xE2, unsafeScalar(in: bytes, at: index).scalar != nil {
                return index
            }
            index += 1
        }
        return nil
    }

    /// The unsafe scalar (other than JSON's whitespace) whose UTF-8 starts at `index`, and its
    /// length in bytes; `nil` when the bytes there are anything else.
    private static func unsafeScalar(in bytes: [UInt8], at index: Int) -> (scalar: Unicode.Scalar?, length: Int) {
        let byte = bytes[index]
        switch byte {
        case 0x09, 0x0A, 0x0D:
            return (nil, 1)
        case 0x00...0x1F, 0x7F:
            return (Unicode.Scalar(byte), 1)
        case 0xC2:
            // U+0080–U+009F: C2 80 … C2 9F.
            guard index + 1 < bytes.count, (0x80...0x9F).contains(bytes[index + 1]) else { return (nil, 1) }
            return (Unicode.Scalar(bytes[index + 1]), 2)
        case 0xE2:
            // U+200E, U+200F: E2 80 8E, E2 80 8F; U+2028–U+202E: E2 80 A8 … E2 80 AE;
            // U+2066–U+2069: E2 81 A6 … E2 81 A9.
            guard index + 2 < bytes.count else { return (nil, 1) }
            let (second, third) = (bytes[index + 1], bytes[index + 2])
            let value: UInt32
            if second == 0x80, (0xA8...0xAE).contains(third) || third == 0x8E || third == 0x8F {
                value = 0x2000 + UInt32(third - 0x80)
            } else if second == 0x81, (0xA6...0xA9).contains(third) {
                value = 0x2040 + UInt32(third - 0x80)
            } else {
                return (nil, 1)
            }
            return (Unicode.Scalar(value), 3)
        default:
            return (nil, 1)
        }
    }
}
