import Foundation
import OrderedJSON
import Synchronization

/// The daemon's own secrets (client secrets, private keys, sink tokens, the proxy password),
/// masked in any text that came from outside before it is logged, stored or shown: a token
/// endpoint, an API, a receiver or a proxy in between may echo the request back (in an
/// `error_description`, an error page, a bulk item's reason).
///
/// Each registered secret is masked as it is and as it travels: percent-encoded (a form body
/// or a URL), in base64 (a `Basic` header), JSON-escaped, and, for a PEM key, each line of it.
/// A URL's password (`scheme://user:password@host`) is masked too, whatever it is.
public enum SecretRedaction {
    /// What replaces a secret.
    public static let mask = "<redacted>"

    /// Known forms of the registered secrets, longest first.
    private static let forms = Mutex<[String]>([])

    /// Masks `secret` in every text passed to ``redact(_:)`` from now on. Values under 4
    /// characters are not registered (they would mask ordinary words).
    public static func register(_ secret: Secret) {
        let new = secret.withValue(variants)
        guard !new.isEmpty else { return }
        forms.withLock { forms in
            forms = Array(Set(forms).union(new)).sorted { $0.count > $1.count }
        }
    }

    /// The text with every registered secret, the secrets in `also` (one request's own, such
    /// as a client assertion), and any URL's password masked.
    public static func redact(_ text: String, also: [Secret] = []) -> String {
        var result = redactAuthorizationHeaders(redactURLPasswords(text))
        let extra = also.flatMap { $0.withValue(variants) }.sorted { $0.count > $1.count }
        for form in extra + forms.withLock({ $0 }) where result.contains(form) {
            result = result.replacingOccurrences(of: form, with: mask)
        }
        return result
    }

    /// `text` as it may leave the process (a log line, `STATUS=`, `/healthz`, a dead letter's
    /// reason, a command's output): every secret masked (``redact(_:also:)``), then every
    /// control character written as a visible escape and the length bounded
    /// (``PrintableText``). Showing a text already shown changes nothing.
    public static func shown(_ text: String, also: [Secret] = [], limit: Int = 4000) -> String {
        PrintableText.shown(redact(text, also: also), limit: limit, escapingBackslash: false)
    }

    /// Bytes from outside (a receiver's answer) with every registered secret, those in `also`,
    /// and every `Authorization:` value masked, whatever the encoding of the rest: an answer
    /// that is not valid UTF-8 is masked byte for byte, never skipped.
    public static func redact(bytes: Data, also: [Secret] = []) -> Data {
        // Text in UTF-16 (an echo from a Windows service) holds a NUL beside each ASCII
        // character, which no form matches: the NULs go first.
        let bytes = bytes.contains(0) ? Data(bytes.lazy.filter { $0 != 0 }) : bytes
        if let text = String(data: bytes, encoding: .utf8) {
            return Data(redact(text, also: also).utf8)
        }
        let extra = also.flatMap { $0.withValue(variants) }.sorted { $0.count > $1.count }
        var masked = bytes
        for form in extra + forms.withLock({ $0 }) {
            let needle = Data(form.utf8)
            var start = masked.startIndex
            while let range = masked.range(of: needle, in: start..<masked.endIndex) {
                masked.replaceSubrange(range, with: Data(mask.utf8))
                start = range.lowerBound + mask.utf8.count
            }
        }
        // The rest is ASCII-compatible: the header masking reads it as Latin-1, byte for byte.
        guard let latin1 = String(data: masked, encoding: .isoLatin1),
            let back = redactAuthorizationHeaders(latin1).data(using: .isoLatin1)
        else { return masked }
        return back
    }

    /// `Authorization: Basic dXNlcjpwYXNz` (and `Proxy-Authorization`, `X-Api-Key`, `Cookie`),
    /// as a receiver or a proxy that echoes the request shows it: the value masked, whether or
    /// not it is a registered secret (a token the daemon never read as such, a form the
    /// variants above do not foresee).
    static func redactAuthorizationHeaders(_ text: String) -> String {
        let lowered = text.lowercased()
        guard ["authorization", "api-key", "apikey", "cookie"].contains(where: { lowered.contains($0) }) else { return text }
        let range = NSRange(text.startIndex..., in: text)
        return headerPattern.stringByReplacingMatches(in: text, range: range, withTemplate: "$1$2" + mask)
    }

    /// A header name that carries a credential, its separator (`:`, `=`, or `":"` in JSON),
    /// and a scheme word; the value after it is what is masked.
    private static let headerPattern = try! NSRegularExpression(
        pattern:
            #"((?:proxy-)?authorization|x-api-key|api-key|apikey|cookie)(["']?\s*[:=]\s*["']?(?:(?:basic|bearer|splunk|apikey|negotiate|digest|ntlm)\s+)?)(?:[^\s"',;&\\]|\\.)+"#,
        options: [.caseInsensitive])

    private static func variants(_ value: String) -> Set<String> {
        var values = [value]
        if value.contains("PRIVATE KEY") {
            values += value.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter {
                $0.count >= 16 && !$0.hasPrefix("-----")
            }
        }
        var forms: Set<String> = []
        for value in values where value.count >= 4 {
            forms.insert(value)
            forms.insert(PercentEncoding.encode(value))
            forms.insert(
                value.replacingOccurrences(of: " ", with: "+").addingPercentEncoding(
                    withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=?"))) ?? value)
            let base64 = Data(value.utf8).base64EncodedString()
            forms.insert(base64)
            // As JSON writers that escape / (PHP) and form or URL encoders write it.
            forms.insert(base64.replacingOccurrences(of: "/", with: "\\/"))
            forms.insert(PercentEncoding.encode(base64))
            forms.insert(
                value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(
                    of: "/", with: "\\/"))
        }
        return forms
    }

    /// `scheme://user:password@host` → `scheme://user:<redacted>@host`, anywhere in the text.
    public static func redactURLPasswords(_ text: String) -> String {
        guard text.contains("://") else { return text }
        var result = ""
        var rest = Substring(text)
        while let scheme = rest.range(of: "://") {
            result += rest[..<scheme.upperBound]
            rest = rest[scheme.upperBound...]
            // The user information ends at the last @ before whitespace or a quote, not at the
            // first / ? or #: a password may hold them (a URL that then fails to parse is still
            // shown in the message that says so). A path's @ may mask more: never less.
            let end = rest.firstIndex { "\"' \t\r\n<>".contains($0) } ?? rest.endIndex
            let candidate = rest[..<end]
            if let at = candidate.lastIndex(of: "@"), let colon = candidate[..<at].firstIndex(of: ":") {
                result += candidate[...colon] + mask
                rest = rest[at...]
            }
        }
        return result + rest
    }
}
