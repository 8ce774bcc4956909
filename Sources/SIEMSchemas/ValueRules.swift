import Foundation

/// The value rules both schemas hold fields to (OCSF's `hostname_t`, `ip_t` and `email_t`;
/// ECS's `ip` type): a value that breaks them is left to the custom namespace instead.
public enum ValueRules {

    /// OCSF's `hostname_t`: dot-separated labels of letters, digits and inner hyphens.
    public static func isHostName(_ text: String) -> Bool {
        guard !text.isEmpty, text.count <= 253 else { return false }
        return text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
                && label.first != "-" && label.last != "-"
        }
    }

    /// OCSF's `ip_t`: an IPv4 or IPv6 address.
    public static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }

    /// OCSF's `email_t`: a local part, `@`, and a domain with a dot.
    public static func isEmailAddress(_ text: String) -> Bool {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix(".") else { return false }
        return parts[0].allSatisfy { $0.isASCII && !$0.isWhitespace }
            && parts[1].allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }
    }

    /// `T1003` of `T1003.001` (a technique is its own parent).
    static func parentTechnique(_ technique: String) -> String {
        String(technique.split(separator: ".").first ?? "")
    }
}
