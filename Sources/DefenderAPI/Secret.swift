/// A secret value (client secret, private key, access token) that never prints itself.
///
/// `description`, `debugDescription`, string interpolation, `dump` and reflection all show
/// `<redacted>`; the value is reachable only through ``withValue(_:)``, so every place that
/// handles the plain text is easy to find and review.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    private let value: String

    /// Wraps a secret value.
    public init(_ value: String) {
        self.value = value
    }

    /// Gives `body` the plain value. Do not let it escape into logs, errors or files.
    public func withValue<R>(_ body: (String) throws -> R) rethrows -> R {
        try body(value)
    }

    /// Whether the secret is empty.
    public var isEmpty: Bool { value.isEmpty }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
