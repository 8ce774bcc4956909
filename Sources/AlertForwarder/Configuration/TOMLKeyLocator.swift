/// Finds the line on which each table and key of a TOML document is written.
///
/// TOMLKit parses the document but keeps no positions, so error messages get their line
/// numbers from this scan of the same text. It runs only on documents TOMLKit has already
/// accepted, so it needs to recognise the layout, not to validate it: `[table]` and
/// `[[array]]` headers, `key = value` lines (bare, quoted or dotted keys), comments, and
/// multi-line strings and arrays whose inner lines are not keys.
///
/// Locations are addressed by path: `service`, `service.poll_interval`, `tenant[0]`,
/// `tenant[0].client_id`.
struct TOMLKeyLocator {
    private var lines: [String: Int] = [:]

    init(source: String) {
        var tableCounts: [String: Int] = [:]
        var currentTable = ""
        var inMultilineString: String?  // the closing delimiter while inside one
        var bracketDepth = 0  // open `[`/`{` of a multi-line value

        for (index, rawLine) in source.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            let line = Substring(rawLine)

            if let delimiter = inMultilineString {
                if line.contains(delimiter) { inMultilineString = nil }
                continue
            }
            let scan = Self.scan(line)
            if bracketDepth > 0 {
                bracketDepth = max(0, bracketDepth + scan.bracketBalance)
                inMultilineString = scan.openMultilineString
                continue
            }
            let code = scan.code.trimmingCharacters(in: " \t\r")
            if code.hasPrefix("[[") {
                let name = Self.normalizeKey(code.dropFirst(2).prefix { $0 != "]" })
                let position = tableCounts[name, default: 0]
                tableCounts[name] = position + 1
                currentTable = "\(name)[\(position)]"
                record(currentTable, lineNumber)
            } else if code.hasPrefix("[") {
                currentTable = Self.normalizeKey(code.dropFirst().prefix { $0 != "]" })
                record(currentTable, lineNumber)
            } else if let equals = scan.firstEquals {
                let key = Self.normalizeKey(line[line.startIndex..<equals])
                record(currentTable.isEmpty ? key : "\(currentTable).\(key)", lineNumber)
                bracketDepth = max(0, scan.bracketBalance)
                inMultilineString = scan.openMultilineString
            }
        }
    }

    /// The line of a path, or of its nearest enclosing table.
    func line(of path: String) -> Int? {
        var candidate = path
        while true {
            if let line = lines[candidate] { return line }
            guard let dot = candidate.lastIndex(of: ".") else { return nil }
            candidate = String(candidate[..<dot])
        }
    }

    private mutating func record(_ path: String, _ line: Int) {
        if lines[path] == nil { lines[path] = line }
    }

    private struct LineScan {
        var code: Substring
        var firstEquals: Substring.Index?
        var bracketBalance = 0
        var openMultilineString: String?
    }

    /// Splits a line into code and comment, noting the first `=` outside strings, the balance
    /// of brackets outside strings, and a multi-line string left open at the end.
    private static func scan(_ line: Substring) -> LineScan {
        var result = LineScan(code: line)
        var index = line.startIndex
        var quote: Character?
        while index < line.endIndex {
            let character = line[index]
            if let open = quote {
                if character == "\\" && open == "\"" {
                    index = line.index(index, offsetBy: 2, limitedBy: line.endIndex) ?? line.endIndex
                    continue
                }
                if character == open { quote = nil }
            } else {
                let rest = line[index...]
                if rest.hasPrefix("\"\"\"") || rest.hasPrefix("'''") {
                    let delimiter = String(rest.prefix(3))
                    let after = line.index(index, offsetBy: 3)
                    if let close = line[after...].range(of: delimiter) {
                        index = close.upperBound
                        continue
                    }
                    result.openMultilineString = delimiter
                    result.code = line[..<index]
                    return result
                }
                switch character {
                case "\"", "'": quote = character
                case "#":
                    result.code = line[..<index]
                    return result
                case "=": if result.firstEquals == nil { result.firstEquals = index }
                case "[", "{": result.bracketBalance += 1
                case "]", "}": result.bracketBalance -= 1
                default: break
                }
            }
            index = line.index(after: index)
        }
        return result
    }

    /// `a . "b"  ` -> `a.b`
    private static func normalizeKey(_ key: Substring) -> String {
        key.split(separator: ".").map {
            $0.trimmingCharacters(in: " \t").trimmingCharacters(in: "\"'")
        }.joined(separator: ".")
    }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        guard let first = firstIndex(where: { !characters.contains($0) }) else { return "" }
        let last = lastIndex(where: { !characters.contains($0) })!
        return String(self[first...last])
    }
}
