import OrderedJSON

/// A JSON object built by dotted paths (`event.severity` goes into `{"event":{"severity":…}}`),
/// members in the order first set. A nil or empty value sets nothing, so a mapping writes
/// each field once and a record without it simply has none.
struct DocumentBuilder {
    private(set) var document: JSONValue = .object([])

    mutating func set(_ path: String, _ value: JSONValue?) {
        guard let value, !Self.isEmpty(value) else { return }
        document = Self.setting(document, path.split(separator: ".").map(String.init)[...], value)
    }

    mutating func set(_ path: String, _ text: String?) {
        set(path, text.map(JSONValue.string))
    }

    mutating func set(_ path: String, _ number: Int64?) {
        set(path, number.map { JSONValue.number(String($0)) })
    }

    /// An array of distinct strings, in first-seen order; nothing when empty.
    mutating func set(_ path: String, strings: [String]) {
        var seen = Set<String>()
        set(path, .array(strings.filter { seen.insert($0).inserted }.map(JSONValue.string)))
    }

    private static func isEmpty(_ value: JSONValue) -> Bool {
        switch value {
        case .null: true
        case .string(let text): text.isEmpty
        case .array(let values): values.isEmpty
        case .object(let members): members.isEmpty
        default: false
        }
    }

    private static func setting(_ node: JSONValue, _ path: ArraySlice<String>, _ value: JSONValue) -> JSONValue {
        guard let name = path.first else { return value }
        var object = node
        if case .object = object {} else { object = .object([]) }
        let child = object[name] ?? .object([])
        object.set(name, path.count == 1 ? value : setting(child, path.dropFirst(), value))
        return object
    }
}
