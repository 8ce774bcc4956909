/// One problem in a configuration file, located as precisely as possible.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file.
    public var path: String
    /// 1-based line, when known.
    public var line: Int?
    /// The key, as a dotted TOML path (`tenant.client_id`), when the problem is about one key.
    public var key: String?
    /// What is wrong and, where possible, how to fix it.
    public var message: String

    /// Creates an error.
    public init(path: String, line: Int? = nil, key: String? = nil, message: String) {
        self.path = path
        self.line = line
        self.key = key
        self.message = message
    }

    /// `PATH:LINE: key: message`.
    public var description: String {
        var text = path
        if let line { text += ":\(line)" }
        text += ": "
        if let key { text += "\(key): " }
        return text + message
    }
}

/// Every problem found in one configuration file (validation does not stop at the first).
public struct ConfigurationErrors: Error, Sendable, CustomStringConvertible {
    /// The problems, in file order where lines are known.
    public var errors: [ConfigurationError]

    /// Wraps the problems.
    public init(_ errors: [ConfigurationError]) {
        self.errors = errors
    }

    /// One problem per line.
    public var description: String {
        errors.map(\.description).joined(separator: "\n")
    }
}
