import Foundation

/// Text from outside made safe to show to a person or write into a line-oriented format.
///
/// A receiver's error page, a token endpoint's message or a user name can hold bytes that a
/// terminal or a parser acts on: line breaks that forge a log line, ESC sequences that move
/// the cursor or disguise a hyperlink (OSC 8), C1 controls that some terminals execute, the
/// Unicode line and paragraph separators, and bidirectional overrides that show text in
/// another order than it is stored (CVE-2021-42574, "Trojan Source"). Each of them is written
/// as a visible escape (`\n`, `\u{1B}`), and the text is cut to a bound.
public enum PrintableText {
    /// Whether a person or a parser must not see `scalar` raw: the C0 and C1 controls and DEL
    /// (Unicode category Cc, which includes NEL U+0085), the line and paragraph separators
    /// (U+2028, U+2029) and the bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E,
    /// U+2066–U+2069).
    public static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }

    /// `text` with every scalar of ``needsEscape(_:)`` escaped (`\n`, `\r`, `\t`, else
    /// `\u{XX}`); cut after `limit` characters with `…` when a limit is given.
    public static func escaped(_ text: some StringProtocol, limit: Int? = nil) -> String {
        var result = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if let limit, count >= limit {
                result += "…"
                break
            }
            count += 1
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where needsEscape(scalar): result += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// Bytes from outside (a response body) as escaped text: invalid UTF-8 becomes U+FFFD,
    /// and only the first `limit` bytes are read.
    public static func escaped(bytes: some Collection<UInt8>, limit: Int) -> String {
        let text = String(decoding: bytes.prefix(limit), as: UTF8.self)
        return escaped(text) + (bytes.count > limit ? "…" : "")
    }
}
