import OrderedJSON
import Timekeeping

/// The alerts the simulated tenant holds, in the order they were created.
///
/// Each alert becomes queryable at `visibleFrom`, which is its `lastUpdateTime` unless the
/// alert is "late" (Defender fills alerts in gradually: they can surface minutes after their
/// timestamp). Results come back in creation order by default (not sorted by
/// `lastUpdateTime`), or in the ``ResultOrder`` asked for: the API promises no order, and a
/// client must be correct under any of them.
struct AlertStore {
    struct StoredAlert {
        var object: JSONValue
        var lastUpdateTime: Timestamp
        var visibleFrom: Timestamp
        /// An alert of another service than Endpoint: a Graph object, which only Graph lists.
        var graphOnly = false

        /// The alert as Graph's `security/alerts_v2` shows it.
        var graphObject: JSONValue { graphOnly ? object : GraphAlert.from(object) }
    }

    private(set) var alerts: [StoredAlert] = []
    private var positions: [String: Int] = [:]

    var count: Int { alerts.count }

    /// Adds or replaces an alert (by `id`); returns its id.
    @discardableResult
    mutating func upsert(_ object: JSONValue, visibleFrom: Timestamp? = nil, graphOnly: Bool = false) throws(SimulatorSetupError) -> String {
        guard let id = object["id"]?.stringValue else { throw SimulatorSetupError("an alert needs a string \"id\"") }
        let member = graphOnly ? "lastUpdateDateTime" : "lastUpdateTime"
        guard let text = object[member]?.stringValue, let updated = Timestamp(parsing: text) else {
            throw SimulatorSetupError("alert \(id) needs a \"\(member)\" in ISO 8601 (UTC, 0-7 fraction digits)")
        }
        let stored = StoredAlert(object: object, lastUpdateTime: updated, visibleFrom: visibleFrom ?? updated, graphOnly: graphOnly)
        if let position = positions[id] {
            alerts[position] = stored
        } else {
            positions[id] = alerts.count
            alerts.append(stored)
        }
        return id
    }

    func alert(id: String) -> StoredAlert? {
        positions[id].map { alerts[$0] }
    }

    /// The alerts visible at `now` that match the query, in `order`, after `$skip` and `$top`;
    /// with `deviceGroups`, only those of the groups a signed-in user may see (before paging, as
    /// the API filters them).
    func query(
        _ query: AlertsQuery, now: Timestamp, order: ResultOrder = .creation, deviceGroups: Set<String>? = nil,
        random: inout SeededRandom
    ) -> [JSONValue] {
        guard order != .creation else { return self.query(query, now: now, deviceGroups: deviceGroups) }
        var matched = alerts.filter {
            !$0.graphOnly && $0.visibleFrom <= now && Self.visible($0, to: deviceGroups) && (query.filter?.matches($0.object) ?? true)
        }
        switch order {
        case .creation: break
        case .oldestFirst: matched.sort { $0.lastUpdateTime < $1.lastUpdateTime }
        case .newestFirst: matched.sort { $0.lastUpdateTime > $1.lastUpdateTime }
        case .shuffled: matched.shuffle(using: &random)
        }
        return matched.dropFirst(query.skip).prefix(query.top ?? AlertsQuery.maximumTop).map { alert in
            var object = alert.object
            if !query.expandEvidence { object.set("evidence", .array([])) }
            return object
        }
    }

    /// The Graph view of the alerts visible at `now` that match a `security/alerts_v2` query,
    /// in `order`, after `$skip` and `$top`; and how many match in all (`@odata.count`).
    func graphQuery(
        _ query: GraphQuery, now: Timestamp, order: ResultOrder, deviceGroups: Set<String>? = nil,
        random: inout SeededRandom
    ) -> (page: [JSONValue], total: Int) {
        var matched: [(object: JSONValue, updated: Timestamp)] = []
        for alert in alerts where alert.visibleFrom <= now && Self.visible(alert, to: deviceGroups) {
            let object = alert.graphObject
            if query.filter?.matches(object) ?? true { matched.append((object, alert.lastUpdateTime)) }
        }
        switch order {
        case .creation: break
        case .oldestFirst: matched.sort { $0.updated < $1.updated }
        case .newestFirst: matched.sort { $0.updated > $1.updated }
        case .shuffled: matched.shuffle(using: &random)
        }
        let page = matched.dropFirst(query.skip).prefix(query.pageSize).map(\.object)
        return (Array(page), matched.count)
    }

    /// Graph's `security/incidents` at `now`: one incident per `incidentId` of the visible
    /// alerts, made of them as they are now (``GraphIncident``), matching the query, in its
    /// `$orderby` or else newest first ("the most recent incidents are displayed at the top of
    /// the list": by creation), after `$skip` and `$top`; and how many match in all.
    func incidentQuery(_ query: GraphQuery, now: Timestamp, deviceGroups: Set<String>? = nil) -> (page: [JSONValue], total: Int) {
        var grouped: [String: [JSONValue]] = [:]
        var ids: [String] = []
        for alert in alerts where alert.visibleFrom <= now && Self.visible(alert, to: deviceGroups) {
            let object = alert.graphObject
            guard let id = object["incidentId"]?.stringValue else { continue }
            if grouped[id] == nil { ids.append(id) }
            grouped[id, default: []].append(object)
        }
        var matched: [(object: JSONValue, key: Timestamp)] = []
        let order = query.order ?? GraphQuery.Order(property: "createdDateTime", descending: true)
        for id in ids {
            let incident = GraphIncident.make(id: id, alerts: grouped[id] ?? [], expand: query.expand)
            guard query.filter?.matches(incident) ?? true else { continue }
            matched.append((incident, incident[order.property]?.stringValue.flatMap { Timestamp(parsing: $0) } ?? Timestamp(ticks: 0)))
        }
        // Stable: incidents of one time keep the order of their first alerts.
        matched = matched.enumerated().sorted { lhs, rhs in
            lhs.element.key != rhs.element.key ? (lhs.element.key < rhs.element.key) != order.descending : lhs.offset < rhs.offset
        }.map(\.element)
        return (Array(matched.dropFirst(query.skip).prefix(query.pageSize).map(\.object)), matched.count)
    }

    /// Whether a user who may see `deviceGroups` (all when nil) sees the alert.
    static func visible(_ alert: StoredAlert, to deviceGroups: Set<String>?) -> Bool {
        guard let deviceGroups else { return true }
        return alert.object["rbacGroupName"]?.stringValue.map(deviceGroups.contains) ?? false
    }

    /// The alerts visible at `now` that match the query, in creation order, after `$skip` and `$top`.
    func query(_ query: AlertsQuery, now: Timestamp, deviceGroups: Set<String>? = nil) -> [JSONValue] {
        var matched: [JSONValue] = []
        var skipped = 0
        let limit = query.top ?? AlertsQuery.maximumTop
        guard limit > 0 else { return [] }
        for alert in alerts where !alert.graphOnly && alert.visibleFrom <= now && Self.visible(alert, to: deviceGroups) {
            guard query.filter?.matches(alert.object) ?? true else { continue }
            if skipped < query.skip {
                skipped += 1
                continue
            }
            var object = alert.object
            if !query.expandEvidence { object.set("evidence", .array([])) }
            matched.append(object)
            if matched.count == limit { break }
        }
        return matched
    }
}

/// The order in which the simulated API returns matching alerts.
public enum ResultOrder: String, Sendable, CaseIterable {
    /// The order the alerts were created in (an update keeps an alert's place).
    case creation
    /// By `lastUpdateTime`, oldest first.
    case oldestFirst = "oldest-first"
    /// By `lastUpdateTime`, newest first.
    case newestFirst = "newest-first"
    /// A different random order on every request.
    case shuffled
}
