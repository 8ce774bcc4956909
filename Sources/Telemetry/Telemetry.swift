import CoreMetrics
import Foundation
import Prometheus

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
        CoreMetrics.Counter(label: family.name, dimensions: dimensions(family, .counter, values), factory: factory)
    }

    /// A counter of `family` that counts fractions (seconds).
    public func fractionCounter(_ family: MetricFamily, _ values: [String] = []) -> FloatingPointCounter {
        FloatingPointCounter(label: family.name, dimensions: dimensions(family, .counter, values), factory: factory)
    }

    /// A gauge of `family`.
    public func gauge(_ family: MetricFamily, _ values: [String] = []) -> Meter {
        Meter(label: family.name, dimensions: dimensions(family, .gauge, values), factory: factory)
    }

    /// A histogram of durations (`family` in seconds).
    public func timer(_ family: MetricFamily, _ values: [String] = []) -> CoreMetrics.Timer {
        precondition(family.isDuration, "\(family) is not a histogram of seconds")
        return CoreMetrics.Timer(label: family.name, dimensions: dimensions(family, .histogram, values), factory: factory)
    }

    /// A histogram of values (counts).
    public func histogram(_ family: MetricFamily, _ values: [String] = []) -> Recorder {
        precondition(!family.isDuration, "\(family) is a histogram of seconds: use timer(_:_:)")
        return Recorder(label: family.name, dimensions: dimensions(family, .histogram, values), aggregate: true, factory: factory)
    }

    private func dimensions(_ family: MetricFamily, _ kind: MetricFamily.Kind, _ values: [String]) -> [(String, String)] {
        precondition(family.kind == kind && values.count == family.labels.count && MetricFamily.named(family.name) == family,
                     "\(family) is not a \(kind) with labels \(family.labels)")
        return Array(zip(family.labels, values))
    }
}

extension MetricFamily {
    /// A histogram of seconds (made by a swift-metrics `Timer`).
    var isDuration: Bool { kind == .histogram && name.hasSuffix("_seconds") }
}
