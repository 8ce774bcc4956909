/// Parses the duration strings of the configuration file: a number and a unit (`500ms`,
/// `30s`, `5m`, `2h`, `1d`), or several in a row (`1h30m`); `0` alone is zero (where a key
/// allows it, it turns something off).
public enum ConfigDuration {
    private static let units: [(suffix: String, duration: Duration)] = [
        ("ms", .milliseconds(1)), ("s", .seconds(1)), ("m", .seconds(60)),
        ("h", .seconds(3600)), ("d", .seconds(86400)),
    ]

    /// The longest duration accepted: 1,000 years.
    public static let longest: Duration = .seconds(1000 * 365 * 86400)

    /// The duration, or `nil` when the text is not a duration (or longer than ``longest``).
    public static func parse(_ text: String) -> Duration? {
        var rest = Substring(text)
        var total: Duration = .zero
        guard !rest.isEmpty else { return nil }
        if text == "0" { return .zero }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, digits.count <= 12, let value = Int64(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            // Longest suffix first so that "ms" is not read as "m".
            guard
                let unit = units.sorted(by: { $0.suffix.count > $1.suffix.count })
                    .first(where: { rest.hasPrefix($0.suffix) })
            else { return nil }
            rest = rest.dropFirst(unit.suffix.count)
            total += unit.duration * value
            // Far beyond any sensible setting, and long before Duration's arithmetic would trap.
            guard total <= Self.longest else { return nil }
        }
        return total
    }

    /// A short, exact rendering for messages (`90s` -> `1m30s`).
    public static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        var milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        if milliseconds == 0 { return "0s" }
        var text = ""
        for (suffix, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] as [(String, Int64)] {
            if milliseconds >= size {
                text += "\(milliseconds / size)\(suffix)"
                milliseconds %= size
            }
        }
        return text
    }
}
