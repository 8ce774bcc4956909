/// The port written in a URL's authority, read from the text itself.
///
/// Foundation's `URLComponents` turns a port that does not fit an `Int`
/// (`http://h:99999999999999999999`) into no port at all, and the caller then silently uses
/// the scheme's default: a proxy on 3128, a receiver on 80. Every URL the configuration takes
/// is checked here first, so such a port is refused with its line instead.
public enum URLAuthority {
    /// What the authority of `url` says of its port.
    public enum Port: Equatable, Sendable {
        /// No port written: the scheme's default applies.
        case absent
        /// A port in 1...65535.
        case valid(Int)
        /// Written, but not a port: the text as written (empty for `host:`).
        case invalid(String)
    }

    /// The port of `url` (`scheme://[user[:password]@]host[:port][/...]`, the host possibly
    /// an IPv6 literal in brackets). Text without `://` has no authority: `.absent`.
    public static func port(of url: String) -> Port {
        guard let schemeEnd = url.range(of: "://") else { return .absent }
        let rest = url[schemeEnd.upperBound...]
        var authority = rest[..<(rest.firstIndex { "/?#".contains($0) } ?? rest.endIndex)]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return .absent }
            authority = authority[authority.index(after: close)...]
            guard authority.hasPrefix(":") else { return .absent }
        }
        guard let colon = authority.lastIndex(of: ":") else { return .absent }
        let text = authority[authority.index(after: colon)...]
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }),
            let port = Int(text), (1...65535).contains(port)
        else {
            return .invalid(String(text))
        }
        return .valid(port)
    }
}
