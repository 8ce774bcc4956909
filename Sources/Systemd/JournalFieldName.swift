/// Turns logger metadata keys into valid journal field names.
///
/// Journal field names are upper-case ASCII letters, digits and `_`, must not start with `_`
/// (those are trusted fields only journald may set) or a digit, and are at most 64 bytes.
/// Metadata keys become `DEFENDER_<KEY>` unless they already name a well-known journal field
/// (`MESSAGE_ID`, `ERRNO`...) or already carry the `DEFENDER_` prefix.
public enum JournalFieldName {
    /// The prefix given to our own fields.
    public static let prefix = "DEFENDER_"

    /// User fields documented in systemd.journal-fields(7) that metadata may set directly.
    public static let wellKnownFields: Set<String> = [
        "MESSAGE_ID", "ERRNO", "DOCUMENTATION", "TID", "UNIT", "USER_UNIT",
        "INVOCATION_ID", "USER_INVOCATION_ID", "SYSLOG_FACILITY",
    ]

    /// The journal field name for a metadata key.
    public static func forMetadataKey(_ key: String) -> String {
        var name = String(
            key.uppercased().unicodeScalars.map { scalar -> Character in
                switch scalar {
                case "A"..."Z", "0"..."9", "_": Character(scalar)
                default: "_"
                }
            })
        while name.hasPrefix("_") { name.removeFirst() }
        if name.isEmpty { name = "FIELD" }
        if !wellKnownFields.contains(name), !name.hasPrefix(prefix) {
            name = prefix + name
        }
        return String(name.prefix(64))
    }
}
