import Foundation

/// Whether a URL's host is this machine, decided by address, never by how the name looks
/// (`127.attacker.example` and `127.0.0.1.nip.io` are names that resolve anywhere).
public enum Loopback {
    /// True for an IPv4 literal in 127.0.0.0/8, the IPv6 literal `::1` (bracketed or not), and
    /// `localhost` when every address it resolves to is one of those.
    public static func isLoopback(host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if let loopback = literal(bare) { return loopback }
        guard bare.lowercased() == "localhost" else { return false }
        return resolvesOnlyToLoopback(bare)
    }

    /// For an IP literal: whether it is a loopback address; `nil` when `text` is not a literal.
    static func literal(_ text: String) -> Bool? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) } == [UInt8](repeating: 0, count: 15) + [1]
        }
        return nil
    }

    private static func resolvesOnlyToLoopback(_ name: String) -> Bool {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &list) == 0, let first = list else { return false }
        defer { freeaddrinfo(list) }
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let current = entry {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            guard getnameinfo(current.pointee.ai_addr, current.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0,
                literal(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)) == true
            else { return false }
            entry = current.pointee.ai_next
        }
        return true
    }
}
