import Foundation

/// The two text formats a scraper may ask for.
public enum ExpositionFormat: Sendable, Equatable {
    /// The Prometheus text format 0.0.4 (the default).
    case prometheus
    /// OpenMetrics 1.0.0, when the scraper's `Accept` asks for `application/openmetrics-text`.
    case openMetrics

    /// The format an `Accept` header asks for: OpenMetrics when it is listed without `q=0`.
    public static func negotiate(accept: String?) -> ExpositionFormat {
        for range in (accept ?? "").split(separator: ",") {
            let parameters = range.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard parameters.first == "application/openmetrics-text" else { continue }
            let refused = parameters.dropFirst().contains { $0.hasPrefix("q=") && Double($0.dropFirst(2)) == 0 }
            if !refused { return .openMetrics }
        }
        return .prometheus
    }

    public var contentType: String {
        switch self {
        case .prometheus: "text/plain; version=0.0.4; charset=utf-8"
        case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
        }
    }
}

extension Telemetry {
    /// Every metric in `format`, with the `# HELP` of ``MetricFamily/all``. OpenMetrics names a
    /// counter's family without `_total`, writes bucket bounds as floats and ends with `# EOF`.
    public func exposition(_ format: ExpositionFormat) -> String {
        var text = ""
        for line in registry.emitToString().split(separator: "\n", omittingEmptySubsequences: true) {
            guard line.hasPrefix("# TYPE ") else {
                text += format == .openMetrics ? Self.canonicalBucketBound(line) : line
                text += "\n"
                continue
            }
            let words = line.split(separator: " ")
            guard words.count == 4, let family = MetricFamily.named(String(words[2])) else {
                text += line + "\n"
                continue
            }
            let name = format == .openMetrics ? family.openMetricsName : family.name
            text += "# HELP \(name) \(Self.escape(family.help, format))\n# TYPE \(name) \(words[3])\n"
        }
        if format == .openMetrics { text += "# EOF\n" }
        return text
    }

    /// HELP text escaped: `\` and line feeds always, `"` in OpenMetrics.
    static func escape(_ help: String, _ format: ExpositionFormat) -> String {
        var escaped = help.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
        if format == .openMetrics { escaped = escaped.replacingOccurrences(of: "\"", with: "\\\"") }
        return escaped
    }

    /// OpenMetrics wants `le="1.0"`, not `le="1"`: a bucket bound written as an integer gets `.0`.
    static func canonicalBucketBound(_ line: Substring) -> Substring {
        guard let start = line.range(of: "le=\"") else { return line }
        let rest = line[start.upperBound...]
        guard let end = rest.firstIndex(of: "\""), !rest[..<end].isEmpty, rest[..<end].allSatisfy(\.isNumber) else { return line }
        return line[..<end] + ".0" + line[end...]
    }
}
