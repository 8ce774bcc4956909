/// Text from outside (an Entra ID answer, a user name) made safe to print on a person's
/// terminal: every character that could move the cursor, start an escape sequence (a disguised
/// hyperlink, a cleared screen), break or reorder a line is written as visible `\u{XXXX}`, and
/// the length is bounded.
///
/// Escaped: C0 controls (U+0000–U+001F, line breaks and tabs included: the caller decides where
/// lines end), DEL (U+007F), C1 controls (U+0080–U+009F, NEL U+0085 among them), the line and
/// paragraph separators U+2028 and U+2029, and the bidirectional formatting characters
/// U+200E, U+200F, U+202A–U+202E and U+2066–U+2069 (which can show text in another order than
/// it is read, CVE-2021-42574 "Trojan Source").
public enum PrintableText {
    /// The characters ``escaped(_:limit:)`` writes as `\u{XXXX}`.
    public static func needsEscaping(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }

    /// `text` with every character of ``needsEscaping(_:)`` written as `\u{XXXX}` (and a
    /// backslash as `\\`, so an escape in the text cannot pass for one of ours), cut after
    /// `limit` characters of output with "…".
    ///
    /// Without `escapingBackslash` the result can be escaped again unchanged (a reason that
    /// passes through several messages is not doubled at each): for texts that only need to
    /// be printable and single-line, such as the daemon's own error messages.
    public static func escaped(_ text: some StringProtocol, limit: Int = 1_000, escapingBackslash: Bool = true) -> String {
        var output = ""
        var length = 0
        for scalar in text.unicodeScalars {
            let piece: String
            if needsEscaping(scalar) {
                piece = "\\u{" + String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 4) + "}"
            } else if escapingBackslash, scalar == "\\" {
                piece = "\\\\"
            } else {
                piece = String(Character(scalar))
            }
            guard length + piece.unicodeScalars.count <= limit else {
                output += "…"
                return output
            }
            output += piece
            length += piece.unicodeScalars.count
        }
        return output
    }

    /// Bytes from outside (a response body) as escaped text: invalid UTF-8 becomes U+FFFD,
    /// and only the first `limit` bytes are read.
    public static func escaped(bytes: some Collection<UInt8>, limit: Int) -> String {
        escaped(String(decoding: bytes.prefix(limit), as: UTF8.self), limit: 4 * limit, escapingBackslash: false) + (bytes.count > limit ? "…" : "")
    }

    /// Whether `text` prints as it is: nothing to escape, not longer than `limit`.
    public static func isPrintable(_ text: some StringProtocol, limit: Int = 1_000) -> Bool {
        text.unicodeScalars.count <= limit && !text.unicodeScalars.contains { needsEscaping($0) || $0 == "\\" }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
