import Timekeeping
import OrderedJSON

/// The alerts the simulated tenant holds, in the order they were created.
///
/// Each alert becomes queryable at `visibleFrom`, which is its `lastUpdateTime` unless the
/// alert is "late" (Defender fills alerts in gradually: they can surface minutes after their
/// timestamp). Results come back in creation order, not sorted by `lastUpdateTime`, so
/// clients cannot rely on an order the API does not promise.
struct AlertStore {
    struct StoredAlert {
        var object: JSONValue
        var lastUpdateTime: Timestamp
        var visibleFrom: Timestamp
    }

    private(set) var alerts: [StoredAlert] = []
    private var positions: [String: Int] = [:]

    var count: Int { alerts.count }

    /// Adds or replaces an alert (by `id`); returns its id.
    @discardableResult
    mutating func upsert(_ object: JSONValue, visibleFrom: Timestamp? = nil) throws(SimulatorSetupError) -> String {
        guard let id = object["id"]?.stringValue else { throw SimulatorSetupError("an alert needs a string \"id\"") }
        guard let text = object["lastUpdateTime"]?.stringValue, let updated = Timestamp(parsing: text) else {
            throw SimulatorSetupError("alert \(id) needs a \"lastUpdateTime\" in ISO 8601 (UTC, 0-7 fraction digits)")
        }
        let stored = StoredAlert(object: object, lastUpdateTime: updated, visibleFrom: visibleFrom ?? updated)
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

    /// The alerts visible at `now` that match the query, after `$skip` and `$top`.
    func query(_ query: AlertsQuery, now: Timestamp) -> [JSONValue] {
        var matched: [JSONValue] = []
        var skipped = 0
        let limit = query.top ?? AlertsQuery.maximumTop
        guard limit > 0 else { return [] }
        for alert in alerts where alert.visibleFrom <= now {
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
