import Foundation

/// Which proxy to use for which host: from the configuration's `proxy_url`, else from the
/// usual `HTTPS_PROXY`/`https_proxy` and `NO_PROXY`/`no_proxy` environment variables (which
/// AsyncHTTPClient itself ignores).
public struct ProxySettings: Sendable, Equatable {
    /// The proxy's host, port and optional credentials.
    public struct Server: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var username: String?
        /// The password; never printed.
        public var password: Secret?

        /// The proxy without credentials, for messages.
        public var description: String { "\(host):\(port)" }
    }

    public var server: Server?
    /// `NO_PROXY` entries: host names (`example.com` also matches its subdomains), `.suffix`,
    /// IP addresses, or `*`.
    public var exclusions: [String]

    public init(server: Server?, exclusions: [String] = []) {
        self.server = server
        self.exclusions = exclusions
    }

    /// A proxy URL such as `http://user:pass@proxy.example:3128`, or `nil` when it is not one.
    public static func parse(_ url: String) -> Server? {
        guard let components = URLComponents(string: url), components.scheme?.lowercased() == "http" || components.scheme?.lowercased() == "https",
            let host = components.host, !host.isEmpty
        else { return nil }
        // A port Foundation cannot hold comes back as none at all (and would mean 3128).
        let port: Int
        switch URLAuthority.port(of: url) {
        case .absent: port = 3128
        case .valid(let value): port = value
        case .invalid: return nil
        }
        let password = components.password.flatMap { $0.removingPercentEncoding }.map(Secret.init)
        // A password from the environment (HTTPS_PROXY) is masked like any other secret.
        if let password { SecretRedaction.register(password) }
        return Server(host: host, port: port, username: components.user?.removingPercentEncoding, password: password)
    }

    /// Settings from an explicit URL or the environment.
    public static func resolve(proxyURL: String?, environment: [String: String]) -> ProxySettings {
        let url = proxyURL ?? environment["HTTPS_PROXY"] ?? environment["https_proxy"]
        let exclusions = (environment["NO_PROXY"] ?? environment["no_proxy"] ?? "")
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
        return ProxySettings(server: url.flatMap(parse), exclusions: exclusions)
    }

    /// Whether a request to `host` goes through the proxy.
    public func usesProxy(for host: String) -> Bool {
        guard server != nil else { return false }
        let host = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        for rule in exclusions {
            if rule == "*" { return false }
            let bare = rule.hasPrefix(".") ? String(rule.dropFirst()) : rule
            let name = bare.split(separator: ":").first.map(String.init) ?? bare
            if host == name || host.hasSuffix("." + name) { return false }
        }
        return true
    }
}
