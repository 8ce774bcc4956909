import Synchronization

/// The bytes of the alerts this daemon admitted lately, by outbox id, kept until every sink
/// has confirmed them (or the budget is spent: the oldest go first), so that the daemon's own
/// sinks take them from memory instead of reading them back from the server. Reading every
/// alert back was about a fifth of the daemon's CPU in a backfill on PostgreSQL (postgres-nio
/// decoding the rows) and as much again of the server's.
///
/// Only a cache: an alert it does not hold (admitted by another member of the group, before a
/// restart, or pushed out) is read from `outbox`. An outbox id is never reused, so what it
/// holds under an id is that alert's bytes for good.
final class RecentPayloads: Sendable {
    /// Bytes held at most (the payloads' sizes; about 5,000 alerts of 3 KB at the default).
    let budget: Int
    private let held = Mutex(Held())

    private struct Held {
        var payloads: [Int64: [UInt8]] = [:]
        /// Ids in the order they came, for the oldest to go first (some may be gone already).
        var order: [Int64] = []
        var start = 0
        var bytes = 0
    }

    init(budget: Int = 16 << 20) {
        self.budget = budget
    }

    /// Keeps the payloads of alerts just committed to the outbox.
    func add(_ added: [(id: Int64, payload: [UInt8])]) {
        held.withLock { held in
            for (id, payload) in added {
                guard payload.count <= budget, held.payloads[id] == nil else { continue }
                held.payloads[id] = payload
                held.order.append(id)
                held.bytes += payload.count
            }
            while held.bytes > budget, held.start < held.order.count {
                let oldest = held.order[held.start]
                held.start += 1
                if let payload = held.payloads.removeValue(forKey: oldest) { held.bytes -= payload.count }
            }
            // The ids already gone are dropped from the front now and then, not on each call.
            if held.start > 4096, held.start * 2 > held.order.count {
                held.order.removeFirst(held.start)
                held.start = 0
            }
        }
    }

    /// The payloads it holds of `ids`.
    func payloads(_ ids: [Int64]) -> [Int64: [UInt8]] {
        held.withLock { held in
            var found: [Int64: [UInt8]] = [:]
            for id in ids { if let payload = held.payloads[id] { found[id] = payload } }
            return found
        }
    }

    /// Forgets alerts every sink has taken.
    func remove(_ ids: some Sequence<Int64>) {
        held.withLock { held in
            for id in ids { if let payload = held.payloads.removeValue(forKey: id) { held.bytes -= payload.count } }
            if held.payloads.isEmpty {
                held.order = []
                held.start = 0
            }
        }
    }

    /// Alerts held, and their bytes (for tests).
    var usage: (count: Int, bytes: Int) { held.withLock { ($0.payloads.count, $0.bytes) } }
}
