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
    /// Every series in `format`, family by family in the order of ``MetricFamily/all`` (a family
    /// no series of which was touched is left out), each with its `# HELP` and `# TYPE`.
    /// OpenMetrics names a counter's family without `_total` and ends with `# EOF`.
    public func exposition(_ format: ExpositionFormat) -> String {
        let sets = snapshot()
        var text = ""
        for family in MetricFamily.all {
            guard let sets = sets[Layout.owner(of: family)] else { continue }
            var lines = ""
            for set in sets { set.render(family, into: &lines) }
            guard !lines.isEmpty else { continue }
            let name = format == .openMetrics ? family.openMetricsName : family.name
            text += "# HELP \(name) \(Self.escape(family.help, format))\n# TYPE \(name) \(family.kind.rawValue)\n"
            text += lines
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
}

extension SeriesSet {
    /// The sample lines of `family` in this set, if it was touched: one for a counter or gauge
    /// (one per value of its own labels), the buckets (cumulative), sum and count of a histogram.
    func render(_ family: MetricFamily, into text: inout String) {
        let (index, offset) = layout.position(of: family)
        let state = state.withLock { $0 }
        guard state.shown & (1 << index) != 0 else { return }
        let labels = Self.labelText(layout.labels, values)
        let own = Array(family.labels.dropFirst(layout.labels.count))
        switch family.kind {
        case .counter, .gauge:
            guard !own.isEmpty else {
                text += family.name + (labels.isEmpty ? "" : "{\(labels)}") + " \(Self.number(state.numbers[offset]))\n"
                return
            }
            for (known, value) in family.values.enumerated() {
                text += "\(family.name){\(Self.joined(labels, Self.labelText(own, [value])))} \(Self.number(state.numbers[offset + known]))\n"
            }
            for series in state.labelled where series.family == index {
                text += "\(family.name){\(Self.joined(labels, Self.labelText(own, series.values)))} \(Self.number(series.number))\n"
            }
        case .histogram:
            var count = 0.0
            for (bucket, bound) in family.buckets.enumerated() {
                count += state.numbers[offset + bucket]
                text += "\(family.name)_bucket{\(Self.joined(labels, "le=\"\(bound)\""))} \(Self.number(count))\n"
            }
            count += state.numbers[offset + family.buckets.count]
            text += "\(family.name)_bucket{\(Self.joined(labels, "le=\"+Inf\""))} \(Self.number(count))\n"
            let braced = labels.isEmpty ? "" : "{\(labels)}"
            text += "\(family.name)_sum\(braced) \(Self.number(state.numbers[offset + family.buckets.count + 1]))\n"
            text += "\(family.name)_count\(braced) \(Self.number(count))\n"
        }
    }

    /// `name="value",...`, each value escaped (`\`, `"`, line feed).
    static func labelText(_ names: [String], _ values: [String]) -> String {
        zip(names, values).map { name, value in
            let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
            return "\(name)=\"\(escaped)\""
        }.joined(separator: ",")
    }

    private static func joined(_ first: String, _ second: String) -> String {
        first.isEmpty ? second : second.isEmpty ? first : first + "," + second
    }

    /// A whole number without a fraction (counts), any other as Swift writes it; never NaN or
    /// infinite in practice, but written as both formats spell them if so.
    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Inf" : "+Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
