import TOMLKit
import Timekeeping

/// Collects the problems of one configuration file while it is validated.
final class ValidationReport {
    let path: String
    let locator: TOMLKeyLocator
    private(set) var errors: [ConfigurationError] = []
    /// Every secret file read (client secrets, private keys, tokens), for the sink path checks.
    var secretFiles: [String] = []

    init(path: String, locator: TOMLKeyLocator) {
        self.path = path
        self.locator = locator
    }

    /// Records a problem at `location` (a locator path such as `tenant[1].client_id`).
    func add(_ message: String, at location: String, key: String?) {
        errors.append(ConfigurationError(path: path, line: locator.line(of: location), key: key, message: message))
    }
}

/// Reads typed values from one TOML table, reporting every problem to a ``ValidationReport``
/// with the key's line, and afterwards every key nobody asked for as unknown.
///
/// Keys are read only as ``ConfigurationKey``s: their type, limits, allowed values and
/// defaults come from that one table, which the documentation is generated from.
final class TableReader {
    private let table: TOMLTable
    /// Locator path of the table (`service`, `tenant[0]`).
    let location: String
    /// How keys of this table are named in messages (`service`, `tenant`).
    let displayName: String
    private let report: ValidationReport
    private var readKeys: Set<String> = []

    init(_ table: TOMLTable, location: String, displayName: String, report: ValidationReport) {
        self.table = table
        self.location = location
        self.displayName = displayName
        self.report = report
    }

    /// Records a problem with `key` (or with the table itself when `key` is `nil`).
    func fail(_ key: ConfigurationKey?, _ message: String) {
        fail(named: key?.name, message)
    }

    /// Records a problem with the key or table `name` (top-level tables, unknown keys).
    func fail(named name: String?, _ message: String) {
        if let name {
            report.add(message, at: location.isEmpty ? name : "\(location).\(name)", key: displayName.isEmpty ? name : "\(displayName).\(name)")
        } else {
            report.add(message, at: location, key: displayName.isEmpty ? nil : displayName)
        }
    }

    func has(_ key: ConfigurationKey) -> Bool {
        table[key.name] != nil
    }

    /// The raw value of the top-level table `name` (`service`, `tenant`, `sink`).
    func table(named name: String) -> TOMLValueConvertible? {
        readKeys.insert(name)
        return table[name]
    }

    /// The raw value of `key`, marking the key as known; a missing required key is reported.
    private func value(_ key: ConfigurationKey) -> TOMLValueConvertible? {
        precondition(key.table.rawValue == displayName, "\(key.name) is not a key of \(displayName)")
        readKeys.insert(key.name)
        guard let value = table[key.name] else {
            if key.required { fail(key, "required key is missing") }
            return nil
        }
        return value
    }

    private func typeMismatch(_ key: ConfigurationKey, expected: String, found: TOMLValueConvertible) {
        fail(key, "expected \(expected), found \(found.type)")
    }

    /// A non-empty string; an absent key gives its default, if it has one.
    func string(_ key: ConfigurationKey) -> String? {
        guard let value = value(key) else {
            guard case .string(let fallback)? = key.defaultValue else { return nil }
            return fallback
        }
        guard let string = value.string else {
            typeMismatch(key, expected: "a string", found: value)
            return nil
        }
        if string.isEmpty {
            fail(key, "must not be empty")
            return nil
        }
        return string
    }

    func integer(_ key: ConfigurationKey) -> Int? {
        guard case .integer(let range) = key.kind else { preconditionFailure("\(key.name) is not an integer key") }
        guard let value = value(key) else {
            guard case .integer(let fallback)? = key.defaultValue else { return nil }
            return fallback
        }
        guard let integer = value.int else {
            typeMismatch(key, expected: "an integer", found: value)
            return nil
        }
        guard range.contains(integer) else {
            fail(key, "\(integer) is out of range; allowed: \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return integer
    }

    func bool(_ key: ConfigurationKey) -> Bool? {
        guard let value = value(key) else {
            guard case .boolean(let fallback)? = key.defaultValue else { return nil }
            return fallback
        }
        guard let bool = value.bool else {
            typeMismatch(key, expected: "true or false", found: value)
            return nil
        }
        return bool
    }

    /// A duration string, at least the key's minimum (inclusive).
    func duration(_ key: ConfigurationKey) -> Duration? {
        guard case .duration(let minimum) = key.kind else { preconditionFailure("\(key.name) is not a duration key") }
        guard let value = value(key) else { return key.defaultValue == nil ? nil : key.defaultDuration }
        guard let text = value.string else {
            typeMismatch(key, expected: #"a duration string such as "30s", "5m", "2h" or "1d""#, found: value)
            return nil
        }
        guard let duration = ConfigDuration.parse(text) else {
            fail(key, #""\#(text)" is not a duration; use a number and a unit: ms, s, m, h or d (for example "30s" or "1h30m")"#)
            return nil
        }
        guard duration >= minimum else {
            fail(key, minimum == .zero ? "must not be negative" : "must be at least \(ConfigDuration.format(minimum))")
            return nil
        }
        return duration
    }

    /// A size such as `"100MB"`, `"512KiB"`, `"1GB"` or `"0"`, in bytes.
    func byteSize(_ key: ConfigurationKey) -> Int64? {
        guard let value = value(key) else {
            guard case .string(let fallback)? = key.defaultValue else { return nil }
            return Self.parseSize(fallback)
        }
        guard let text = value.string else {
            typeMismatch(key, expected: #"a size string such as "100MB""#, found: value)
            return nil
        }
        guard let size = Self.parseSize(text) else {
            fail(key, #""\#(text)" is not a size; use a number and B, KB, MB, GB, KiB, MiB or GiB (for example "100MB"), or "0""#)
            return nil
        }
        return size
    }

    /// Bytes in a size string, or `nil` when it is not one.
    static func parseSize(_ text: String) -> Int64? {
        let units: [(String, Int64)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1000), ("MB", 1_000_000),
            ("GB", 1_000_000_000), ("B", 1), ("", 1),
        ]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy(\.isNumber), let count = Int64(number), count <= Int64.max / factor else { continue }
            return count * factor
        }
        return nil
    }

    /// One of the key's values (or of `allowed`), returned in its canonical spelling;
    /// case-insensitive. An absent key gives its default, if it has one.
    func choice(_ key: ConfigurationKey, from allowed: [String]? = nil) -> String? {
        guard has(key) else {
            _ = value(key)
            guard case .string(let fallback)? = key.defaultValue else { return nil }
            return fallback
        }
        guard let text = string(key) else { return nil }
        return canonical(text, in: allowed ?? key.values ?? [], key: key)
    }

    /// A choice converted to its enumeration.
    func choice<E: RawRepresentable>(_ key: ConfigurationKey, as type: E.Type = E.self) -> E? where E.RawValue == String {
        choice(key).map { text in
            guard let value = E(rawValue: text) else { preconditionFailure("\(key.name): \(text) is not a \(E.self)") }
            return value
        }
    }

    /// A table whose values are all strings.
    func stringTable(_ key: ConfigurationKey) -> [String: String]? {
        guard let value = value(key) else { return nil }
        guard let table = value.table else {
            typeMismatch(key, expected: "a table of strings such as { \"X-Source\" = \"mde\" }", found: value)
            return nil
        }
        var result: [String: String] = [:]
        for name in table.keys {
            guard let text = table[name]?.string else {
                fail(key, "\"\(name)\" must be a string")
                return nil
            }
            result[name] = text
        }
        return result
    }

    /// A non-empty array of distinct strings, each one of `allowed` (or the key's values) when
    /// given; `note` may add to the message for a value that is not allowed.
    func stringList(_ key: ConfigurationKey, from allowed: [String]? = nil, note: (String) -> String? = { _ in nil }) -> [String]? {
        guard let value = value(key) else { return nil }
        guard let array = value.array else {
            typeMismatch(key, expected: "an array of strings", found: value)
            return nil
        }
        var result: [String] = []
        for element in array {
            guard let text = element.string else {
                typeMismatch(key, expected: "an array of strings", found: element)
                return nil
            }
            guard let item = (allowed ?? key.values).map({ canonical(text, in: $0, key: key, note: note(text)) }) ?? text else { return nil }
            if result.contains(item) {
                fail(key, "\"\(item)\" is listed twice")
                return nil
            }
            result.append(item)
        }
        if result.isEmpty {
            fail(key, "must not be empty; remove the key to allow all")
            return nil
        }
        return result
    }

    private func canonical(_ text: String, in allowed: [String], key: ConfigurationKey, note: String? = nil) -> String? {
        if let match = allowed.first(where: { $0.caseInsensitiveCompare(text) }) { return match }
        fail(key, "\"\(text)\" is not one of: \(allowed.joined(separator: ", "))" + (note.map { " (\($0))" } ?? ""))
        return nil
    }

    /// Reports every key of the table that was never read as unknown.
    func rejectUnknownKeys(hints: [String: String] = [:]) {
        for key in table.keys.sorted() where !readKeys.contains(key) {
            fail(named: key, hints[key] ?? "unknown key" + Self.suggestion(for: key, among: readKeys))
        }
    }

    private static func suggestion(for key: String, among known: Set<String>) -> String {
        guard let closest = known.min(by: { editDistance($0, key) < editDistance($1, key) }),
            editDistance(closest, key) <= 2
        else { return "" }
        return " (did you mean \"\(closest)\"?)"
    }

    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return a.isEmpty ? b.count : previous[b.count]
    }
}

extension String {
    fileprivate func caseInsensitiveCompare(_ other: String) -> Bool {
        lowercased() == other.lowercased()
    }
}
