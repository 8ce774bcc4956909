import Foundation

/// A directory holding a configuration file and its client secret (a canary value that must
/// never appear in any output).
public struct ConfigFixture: Sendable {
    /// The secret's value; tests check that it never shows up anywhere.
    public static let canary = "CANARY-secret-9d1e77"
    /// The directory; the secret is its file `secret`.
    public let directory = TemporaryDirectory()

    public init(secretMode: mode_t = 0o600) {
        directory.write("secret", Self.canary + "\n", mode: secretMode)
    }

    /// A valid tenant using the `secret` file (5 lines).
    public static let tenant = """
        [[tenant]]
        name = "contoso"
        tenant_id = "4F8E2C1A-7B3D-4E59-9A6C-2D1F0E8B7C35"
        client_id = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
        client_secret_file = "secret"
        """

    /// A journal sink (3 lines).
    public static let sink = """
        [[sink]]
        name = "journal"
        type = "journal"
        """

    /// Writes the configuration file (mode 0644 unless told) and returns its path.
    @discardableResult
    public func writeConfiguration(_ text: String, mode: mode_t = 0o644) -> String {
        directory.write("defender-alertd.toml", text, mode: mode)
    }
}
