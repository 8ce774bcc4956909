import CoreMetrics
import Foundation
import Prometheus
import Synchronization

/// The daemon's metrics: counted through swift-metrics (`Counter`, `Meter`, `Timer`,
/// `Recorder`) on a Prometheus registry of its own (not the process-wide `MetricsSystem`, so
/// every daemon, and every test, has its own), and shown in the Prometheus text format or
/// OpenMetrics (``exposition(_:)``).
///
/// Only the families of ``MetricFamily/all`` are ever made, each with its label names in
/// order: a name is never registered with two types (which the registry would not survive).
public final class Telemetry: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    /// Every series made, by family and label values: made once, and destroyed (no longer
    /// shown) when its tenant or sink is no longer configured (``retain(_:values:)``).
    private let handles = Mutex<[SeriesKey: Handle]>([:])

    private struct SeriesKey: Hashable {
        var family: String
        var labels: [String]
    }

    private enum Handle: @unchecked Sendable {
        // @unchecked: swift-metrics' handles are thread-safe classes.
        case counter(CoreMetrics.Counter)
        case fraction(FloatingPointCounter)
        case gauge(Meter)
        case timer(CoreMetrics.Timer)
        case histogram(Recorder)

        func destroy() {
            switch self {
            case .counter(let handle): handle.destroy()
            case .fraction(let handle): handle.destroy()
            case .gauge(let handle): handle.destroy()
            case .timer(let handle): handle.destroy()
            case .histogram(let handle): handle.destroy()
            }
        }
    }

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        for family in MetricFamily.all where family.kind == .histogram {
            if family.isDuration {
                factory.durationHistogramBuckets[family.name] = family.buckets.map { Duration.nanoseconds(Int64(($0 * 1e9).rounded())) }
            } else {
                factory.valueHistogramBuckets[family.name] = family.buckets
            }
        }
        self.factory = factory
    }

    /// A counter of `family` (kind counter) for these label values, in the family's label order.
    public func counter(_ family: MetricFamily, _ values: [String] = []) -> CoreMetrics.Counter {
        guard
            case .counter(let handle) = series(
                family, .counter, values,
                {
                    .counter(CoreMetrics.Counter(label: family.name, dimensions: $0, factory: factory))
                })
        else { preconditionFailure("\(family) is made by counter(_:_:)") }
        return handle
    }

    /// A counter of `family` that counts fractions (seconds).
    public func fractionCounter(_ family: MetricFamily, _ values: [String] = []) -> FloatingPointCounter {
        guard
            case .fraction(let handle) = series(
                family, .counter, values,
                {
                    .fraction(FloatingPointCounter(label: family.name, dimensions: $0, factory: factory))
                })
        else { preconditionFailure("\(family) is made by fractionCounter(_:_:)") }
        return handle
    }

    /// A gauge of `family`.
    public func gauge(_ family: MetricFamily, _ values: [String] = []) -> Meter {
        guard
            case .gauge(let handle) = series(
                family, .gauge, values,
                {
                    .gauge(Meter(label: family.name, dimensions: $0, factory: factory))
                })
        else { preconditionFailure("\(family) is a gauge") }
        return handle
    }

    /// A histogram of durations (`family` in seconds).
    public func timer(_ family: MetricFamily, _ values: [String] = []) -> CoreMetrics.Timer {
        precondition(family.isDuration, "\(family) is not a histogram of seconds")
        guard
            case .timer(let handle) = series(
                family, .histogram, values,
                {
                    .timer(CoreMetrics.Timer(label: family.name, dimensions: $0, factory: factory))
                })
        else { preconditionFailure("\(family) is a histogram of seconds") }
        return handle
    }

    /// A histogram of values (counts).
    public func histogram(_ family: MetricFamily, _ values: [String] = []) -> Recorder {
        precondition(!family.isDuration, "\(family) is a histogram of seconds: use timer(_:_:)")
        guard
            case .histogram(let handle) = series(
                family, .histogram, values,
                {
                    .histogram(Recorder(label: family.name, dimensions: $0, aggregate: true, factory: factory))
                })
        else { preconditionFailure("\(family) is a histogram of values") }
        return handle
    }

    /// Stops showing every series whose label `label` (`tenant`, `sink`) has a value not in
    /// `values`: a tenant or sink a reload removed leaves no gauge behind for a rule to fire on.
    public func retain(_ label: String, values: Set<String>) {
        retain([label], values: Set(values.map { [$0] }))
    }

    /// The same for a combination of labels (`tenant` and `records`: a tenant that no longer
    /// reads incidents): series of families that have all of `labels` are kept only when their
    /// values of them, in that order, are among `values`.
    public func retain(_ labels: [String], values: Set<[String]>) {
        let forgotten = handles.withLock { handles in
            let gone = handles.filter { key, _ in
                guard let family = MetricFamily.named(key.family) else { return false }
                let indices = labels.compactMap { family.labels.firstIndex(of: $0) }
                guard indices.count == labels.count else { return false }
                return !values.contains(indices.map { key.labels[$0] })
            }
            for key in gone.keys { handles.removeValue(forKey: key) }
            return Array(gone.values)
        }
        for handle in forgotten { handle.destroy() }
    }

    /// The series of `family` with these label values: the one made before, or a new one (its
    /// kind and labels checked once, when it is made; families exist only in the catalogue).
    private func series(
        _ family: MetricFamily, _ kind: MetricFamily.Kind, _ values: [String],
        _ make: ([(String, String)]) -> Handle
    ) -> Handle {
        handles.withLock { handles in
            let key = SeriesKey(family: family.name, labels: values)
            if let handle = handles[key] { return handle }
            precondition(family.kind == kind && values.count == family.labels.count, "\(family) is not a \(kind) with labels \(family.labels)")
            let handle = make(Array(zip(family.labels, values)))
            handles[key] = handle
            return handle
        }
    }
}

extension MetricFamily {
    /// A histogram of seconds (made by a swift-metrics `Timer`).
    var isDuration: Bool { kind == .histogram && name.hasSuffix("_seconds") }
}
