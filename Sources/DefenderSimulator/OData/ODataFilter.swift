import OrderedJSON
import Timekeeping

/// A parsed `$filter` expression over alert properties.
public indirect enum ODataFilter: Sendable, Equatable {
    case comparison(property: String, op: ComparisonOperator, value: Literal)
    case and(ODataFilter, ODataFilter)
    case or(ODataFilter, ODataFilter)
    case not(ODataFilter)

    /// `eq ne gt ge lt le`.
    public enum ComparisonOperator: String, Sendable, CaseIterable {
        case eq, ne, gt, ge, lt, le
    }

    /// A literal on the right-hand side of a comparison.
    public enum Literal: Sendable, Equatable {
        case dateTime(Timestamp)
        case string(String)
        case number(Int64)
        case null
    }

    /// The kind of value a filterable property holds.
    enum PropertyKind { case dateTime, string, number }

    /// The filterable properties of an API's alerts, by their canonical spelling, and the
    /// alert's type name (for error messages).
    public struct Schema: Sendable {
        let properties: [String: PropertyKind]
        let typeName: String

        /// MDE `/api/alerts` (`docs/microsoft-apis.md` §2).
        public static let mde = Schema(
            properties: [
                "alertCreationTime": .dateTime, "lastUpdateTime": .dateTime, "lastEventTime": .dateTime,
                "status": .string, "severity": .string, "category": .string, "detectionSource": .string,
                "id": .string, "assignedTo": .string, "incidentId": .number, "investigationId": .number,
            ], typeName: "microsoft.windowsDefenderATP.api.PublicAlert")

        /// Graph `security/alerts_v2`: the properties its list page names (`docs/microsoft-apis.md` §6).
        public static let graph = Schema(
            properties: [
                "assignedTo": .string, "classification": .string, "determination": .string, "createdDateTime": .dateTime,
                "lastUpdateDateTime": .dateTime, "severity": .string, "serviceSource": .string, "status": .string,
            ], typeName: "microsoft.graph.security.alert")

        /// Graph `security/incidents`: the properties its list page names (Microsoft Graph,
        /// "List incidents": assignedTo, classification, createdDateTime, determination,
        /// lastUpdateDateTime, severity, status).
        public static let graphIncident = Schema(
            properties: [
                "assignedTo": .string, "classification": .string, "createdDateTime": .dateTime, "determination": .string,
                "lastUpdateDateTime": .dateTime, "severity": .string, "status": .string,
            ], typeName: "microsoft.graph.security.incident")
    }

    /// Parses `$filter` text; the error message says what is wrong, like the OData library's.
    public static func parse(_ text: String, schema: Schema = .mde) throws(ODataError) -> ODataFilter {
        var parser = FilterParser(tokens: try FilterTokenizer.tokenize(text), schema: schema)
        let filter = try parser.parseExpression()
        guard parser.atEnd else { throw ODataError("Syntax error at position \(parser.position) in '\(text)': unexpected '\(parser.peekText)'.") }
        return filter
    }

    /// Whether an alert object matches.
    public func matches(_ alert: JSONValue) -> Bool {
        switch self {
        case .and(let a, let b): return a.matches(alert) && b.matches(alert)
        case .or(let a, let b): return a.matches(alert) || b.matches(alert)
        case .not(let a): return !a.matches(alert)
        case .comparison(let property, let op, let literal):
            let field = alert[property] ?? .null
            let order: Int?
            switch (field, literal) {
            case (.null, .null): order = 0
            case (.null, _), (_, .null): return op == .ne
            case (.string(let text), .dateTime(let value)):
                guard let time = Timestamp(parsing: text) else { return false }
                order = time.ticks < value.ticks ? -1 : (time.ticks == value.ticks ? 0 : 1)
            case (.string(let text), .string(let value)):
                order = text < value ? -1 : (text == value ? 0 : 1)
            case (.number(let text), .number(let value)):
                guard let number = Int64(text) else { return false }
                order = number < value ? -1 : (number == value ? 0 : 1)
            default: order = nil
            }
            guard let order else { return false }
            switch op {
            case .eq: return order == 0
            case .ne: return order != 0
            case .gt: return order > 0
            case .ge: return order >= 0
            case .lt: return order < 0
            case .le: return order <= 0
            }
        }
    }
}

/// A query the simulator cannot accept; served as 400 `ODataError`.
public struct ODataError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

private enum FilterToken: Equatable {
    case word(String)  // identifiers, operators, unquoted datetimes and numbers
    case string(String)
    case open, close
}

private enum FilterTokenizer {
    static func tokenize(_ text: String) throws(ODataError) -> [(FilterToken, Int)] {
        var tokens: [(FilterToken, Int)] = []
        let characters = Array(text)
        var index = 0
        while index < characters.count {
            let character = characters[index]
            if character == " " || character == "\t" {
                index += 1
            } else if character == "(" {
                tokens.append((.open, index)); index += 1
            } else if character == ")" {
                tokens.append((.close, index)); index += 1
            } else if character == "'" {
                let start = index
                index += 1
                var value = ""
                while true {
                    guard index < characters.count else {
                        throw ODataError("Syntax error: unterminated string literal at position \(start) in '\(text)'.")
                    }
                    if characters[index] == "'" {
                        if index + 1 < characters.count, characters[index + 1] == "'" {
                            value.append("'"); index += 2; continue
                        }
                        index += 1
                        break
                    }
                    value.append(characters[index]); index += 1
                }
                tokens.append((.string(value), start))
            } else {
                let start = index
                var word = ""
                while index < characters.count, !" \t()'".contains(characters[index]) {
                    word.append(characters[index]); index += 1
                }
                tokens.append((.word(word), start))
            }
        }
        return tokens
    }
}

private struct FilterParser {
    let tokens: [(FilterToken, Int)]
    let schema: ODataFilter.Schema
    var index = 0

    init(tokens: [(FilterToken, Int)], schema: ODataFilter.Schema) {
        self.tokens = tokens
        self.schema = schema
    }

    var atEnd: Bool { index >= tokens.count }
    var position: Int { atEnd ? -1 : tokens[index].1 }
    var peekText: String {
        guard !atEnd else { return "" }
        switch tokens[index].0 {
        case .word(let word): return word
        case .string(let value): return "'\(value)'"
        case .open: return "("
        case .close: return ")"
        }
    }

    private func isKeyword(_ keyword: String) -> Bool {
        if !atEnd, case .word(let word) = tokens[index].0 { return word.lowercased() == keyword }
        return false
    }

    mutating func parseExpression() throws(ODataError) -> ODataFilter {
        var left = try parseAnd()
        while isKeyword("or") {
            index += 1
            left = .or(left, try parseAnd())
        }
        return left
    }

    private mutating func parseAnd() throws(ODataError) -> ODataFilter {
        var left = try parseUnary()
        while isKeyword("and") {
            index += 1
            left = .and(left, try parseUnary())
        }
        return left
    }

    private mutating func parseUnary() throws(ODataError) -> ODataFilter {
        if isKeyword("not") {
            index += 1
            return .not(try parseUnary())
        }
        guard !atEnd else { throw ODataError("Syntax error: the $filter expression ends too early.") }
        if tokens[index].0 == .open {
            index += 1
            let inner = try parseExpression()
            guard !atEnd, tokens[index].0 == .close else { throw ODataError("Syntax error: ')' expected at position \(position).") }
            index += 1
            return inner
        }
        return try parseComparison()
    }

    private mutating func parseComparison() throws(ODataError) -> ODataFilter {
        guard case .word(let name) = tokens[index].0 else {
            throw ODataError("Syntax error at position \(position): a property name was expected, found '\(peekText)'.")
        }
        guard let (property, kind) = schema.properties.first(where: { $0.key.lowercased() == name.lowercased() }) else {
            throw ODataError("Could not find a property named '\(name)' on type '\(schema.typeName)'.")
        }
        index += 1
        guard !atEnd, case .word(let opText) = tokens[index].0,
            let op = ODataFilter.ComparisonOperator(rawValue: opText.lowercased())
        else {
            throw ODataError("Syntax error at position \(position): a comparison operator (eq, ne, gt, ge, lt, le) was expected after '\(name)'.")
        }
        index += 1
        guard !atEnd else { throw ODataError("Syntax error: a value was expected after '\(name) \(opText)'.") }
        let token = tokens[index].0
        index += 1
        let literal: ODataFilter.Literal
        switch (kind, token) {
        case (_, .word(let word)) where word.lowercased() == "null":
            literal = .null
        case (.dateTime, .word(let word)):
            guard let time = Timestamp(parsing: word), word.hasSuffix("Z") || word.hasSuffix("z") else {
                throw ODataError(
                    "The DateTimeOffset text '\(word)' should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field value is within valid range."
                )
            }
            literal = .dateTime(time)
        case (.dateTime, .string(let value)):
            throw ODataError(
                "A binary operator with incompatible types was detected. Found operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind '\(op)' ('\(value)' must not be quoted)."
            )
        case (.string, .string(let value)):
            literal = .string(value)
        case (.string, .word(let word)):
            throw ODataError(
                "A binary operator with incompatible types was detected. Found operand types 'Edm.String' and '\(word)' for operator kind '\(op)' (string values are quoted: '\(word)')."
            )
        case (.number, .word(let word)):
            guard let number = Int64(word) else { throw ODataError("'\(word)' is not a valid Edm.Int64 literal for '\(property)'.") }
            literal = .number(number)
        case (.number, .string(let value)):
            throw ODataError(
                "A binary operator with incompatible types was detected. Found operand types 'Edm.Int64' and 'Edm.String' for operator kind '\(op)' ('\(value)')."
            )
        default:
            throw ODataError("Syntax error at position \(position): a value was expected after '\(name) \(opText)'.")
        }
        return .comparison(property: property, op: op, value: literal)
    }
}
