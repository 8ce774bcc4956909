import Synchronization

/// The series of one label set: a tenant's stream (`tenant`, `api`, `records`), a tenant's API
/// calls (`tenant`, `api`), a sink, a tenant's lease, or the process (no labels). Every family
/// whose labels are exactly the set's has its values in one flat array (a counter or a gauge one
/// number, a histogram its buckets and sum), and so does one with a label of its own whose
/// values are known (`result`: a number for `ok`, `failed`, `paused`); one with other labels of
/// its own (`endpoint` and `status_class`, `code`...) keeps one number for each of their values
/// met so far.
///
/// This is what a tenant costs in metrics: about 1 KB for its 25 series, where a registry
/// object per series (swift-metrics over swift-prometheus, as before) took 17 KB. A series is
/// shown from the first time it is touched (counted, set, observed or ``show(_:_:)``), so a
/// daemon outside a group shows no group series and a tenant's series appear when it is
/// configured.
public final class SeriesSet: Sendable {
    /// The values of the set's label names (``Layout/labels``), in order.
    public let values: [String]
    let layout: Layout
    let state: Mutex<State>

    struct State {
        /// The families without labels of their own, at their layout's offsets.
        var numbers: [Double]
        /// Bit `i` is set once the `i`th family of the layout was touched.
        var shown: UInt64 = 0
        /// The series of families with labels of their own, in the order they were met.
        var labelled: [Labelled] = []
    }

    struct Labelled {
        var family: Int
        var values: [String]
        var number: Double
    }

    init(layout: Layout, values: [String]) {
        precondition(values.count == layout.labels.count, "a set of \(layout.labels) has as many values")
        self.layout = layout
        self.values = values
        state = Mutex(State(numbers: Array(repeating: 0, count: layout.width)))
    }

    /// Adds `amount` to a counter of the set (`extra`: the values of the family's own labels).
    public func add(_ family: MetricFamily, _ amount: Double, _ extra: [String] = []) {
        precondition(family.kind == .counter, "\(family) is not a counter")
        update(family, extra) { $0 += amount }
    }

    /// Sets a gauge of the set.
    public func set(_ family: MetricFamily, _ value: Double, _ extra: [String] = []) {
        precondition(family.kind == .gauge, "\(family) is not a gauge")
        update(family, extra) { $0 = value }
    }

    /// Counts `value` (in the family's unit: seconds for `_seconds`) in a histogram of the set.
    public func observe(_ family: MetricFamily, _ value: Double) {
        precondition(family.kind == .histogram, "\(family) is not a histogram")
        let (index, offset) = layout.position(of: family)
        let bucket = family.buckets.firstIndex { value <= $0 } ?? family.buckets.count
        state.withLock { state in
            state.shown |= 1 << index
            state.numbers[offset + bucket] += 1
            state.numbers[offset + family.buckets.count + 1] += value
        }
    }

    /// Shows a series at zero (or at its value) before its first event, so a rule on it works.
    public func show(_ family: MetricFamily, _ extra: [String] = []) {
        update(family, extra) { _ in }
    }

    private func update(_ family: MetricFamily, _ extra: [String], _ change: (inout Double) -> Void) {
        let (index, offset) = layout.position(of: family)
        precondition(extra.count == family.labels.count - layout.labels.count, "\(family) has labels \(family.labels)")
        let known = extra.count == 1 ? family.values.firstIndex(of: extra[0]) : nil
        state.withLock { state in
            state.shown |= 1 << index
            if extra.isEmpty { return change(&state.numbers[offset]) }
            if let known { return change(&state.numbers[offset + known]) }
            if let found = state.labelled.firstIndex(where: { $0.family == index && $0.values == extra }) {
                change(&state.labelled[found].number)
            } else {
                var number = 0.0
                change(&number)
                state.labelled.append(Labelled(family: index, values: extra, number: number))
            }
        }
    }
}

/// Where the families of one label set keep their numbers: the families whose labels begin with
/// the set's (and have no others, or labels of their own after them), each at an offset of the
/// set's array (a counter or gauge one number; a histogram its buckets, the overflow, the sum).
struct Layout: Sendable {
    let labels: [String]
    /// The families, in catalogue order (at most 64: a bit each in ``SeriesSet/State/shown``).
    let families: [MetricFamily]
    /// Where each family's numbers start (labelled families take none).
    let offsets: [Int]
    let width: Int
    private let indexByName: [String: Int]

    init(labels: [String], families: [MetricFamily]) {
        precondition(families.count <= 64)
        self.labels = labels
        self.families = families
        var offsets: [Int] = [], width = 0
        for family in families {
            precondition(family.kind != .histogram || family.labels == labels, "\(family): a histogram has no labels of its own")
            offsets.append(width)
            width += Self.width(of: family, labels)
        }
        self.offsets = offsets
        self.width = width
        indexByName = Dictionary(uniqueKeysWithValues: families.enumerated().map { ($1.name, $0) })
    }

    /// How many numbers a family takes in sets of `labels`: a counter or gauge one, or one for
    /// each of its known ``MetricFamily/values``; a histogram its buckets, the overflow and the
    /// sum; none for other labels of its own (those are kept as met).
    static func width(of family: MetricFamily, _ labels: [String]) -> Int {
        switch family.labels.count - labels.count {
        case 0: family.kind == .histogram ? family.buckets.count + 2 : 1
        case 1: family.values.count
        default: 0
        }
    }

    /// The family's index in the layout and its first number's offset.
    func position(of family: MetricFamily) -> (index: Int, offset: Int) {
        guard let index = indexByName[family.name] else { preconditionFailure("\(family) has labels \(family.labels), not \(labels)") }
        return (index, offsets[index])
    }

    /// The label sets series are kept by, each with the families whose labels begin with it
    /// (the longest that fits): `[]`, `[tenant]`, `[tenant, api]`, `[tenant, api, records]`,
    /// `[sink]`.
    static let all: [Layout] = {
        labelSets.map { labels in Layout(labels: labels, families: MetricFamily.all.filter { owner(of: $0) == labels }) }
    }()

    private static let labelSets: [[String]] = [[], ["tenant"], MetricFamily.tenantAPI, MetricFamily.tenantStream, ["sink"]]

    /// The label set whose series hold `family`'s: the longest its labels begin with.
    static func owner(of family: MetricFamily) -> [String] {
        labelSets.filter { family.labels.starts(with: $0) }.max { $0.count < $1.count } ?? []
    }

    /// The layout of the sets whose labels are `labels`.
    static func of(_ labels: [String]) -> Layout {
        guard let layout = all.first(where: { $0.labels == labels }) else { preconditionFailure("no series are kept by \(labels)") }
        return layout
    }
}
