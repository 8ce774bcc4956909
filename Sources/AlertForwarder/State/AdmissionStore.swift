import DefenderAPI
import Foundation
import Timekeeping

/// Admission: per tenant the watermark and the dedup keys. Admitting a page is one
/// transaction: known alerts are skipped, new ones are queued in the outbox for their sinks,
/// elements that are not alerts are quarantined, and the watermark moves.
public protocol AdmissionStore: Sendable {
    /// The tenant's watermark: the newest `lastUpdateTime` stored, or `nil` before the first poll.
    func watermark(tenant: String) async throws(StateError) -> Timestamp?

    /// Admits one page in one transaction: skips known keys, records new ones, queues each new
    /// alert once for its sinks, and moves the watermark as `watermark` says (never back). A
    /// crash before the commit leaves nothing; after it, all. `storesHeadline`: one of the
    /// sinks shows the alert's headline (``SinkConfiguration/showsHeadline``), which is then
    /// decoded here and stored with the alert; else a sink that asks reads it from the bytes.
    func admit(tenant: String, alerts: [Alert], rejected: [RejectedElement], forward: ForwardMode, sinks: [String], storesHeadline: Bool,
               now: Date, watermark: WatermarkMove) async throws(StateError) -> Admission

    /// Whether an alert was already forwarded (read only: for dry runs).
    func isKnown(tenant: String, alert: Alert, forward: ForwardMode) async throws(StateError) -> Bool

    /// Forgets a tenant's cursor, dedup keys and sweep schedule (its queued alerts stay queued).
    func reset(tenant: String) async throws(StateError)

    /// Deletes dedup keys older than ``StateStore/dedupRetention``; returns how many. Age is
    /// measured per tenant from the earlier of the local clock and the tenant's watermark (the
    /// server's clock): a local clock set 200 days ahead must not prune keys still needed.
    func pruneDedupKeys(now: Date) async throws(StateError) -> Int

    /// Every tenant with state, for `state show`.
    func tenants() async throws(StateError) -> [TenantState]
}

extension AdmissionStore {
    public func admit(tenant: String, alerts: [Alert], rejected: [RejectedElement] = [], forward: ForwardMode, sinks: [String],
                      storesHeadline: Bool = true, now: Date = Date(), watermark: WatermarkMove = .byAlerts) async throws(StateError) -> Admission {
        try await admit(tenant: tenant, alerts: alerts, rejected: rejected, forward: forward, sinks: sinks, storesHeadline: storesHeadline,
                        now: now, watermark: watermark)
    }

    @discardableResult
    public func pruneDedupKeys() async throws(StateError) -> Int {
        try await pruneDedupKeys(now: Date())
    }
}

/// How an admission moves the tenant's watermark (it never moves back).
public enum WatermarkMove: Sendable, Equatable {
    /// To the newest update time among the alerts.
    case byAlerts
    /// Not at all: the alerts are part of a window not yet read to its end.
    case hold
    /// To this time: the end of a window read over several admissions.
    case to(Timestamp)

    /// Where the watermark goes for `alerts`, if anywhere.
    func newest(of alerts: [Alert]) -> Timestamp? {
        switch self {
        case .byAlerts: alerts.map(\.lastUpdateTime).max()
        case .hold: nil
        case .to(let time): time
        }
    }
}

/// What one admission did.
public struct Admission: Sendable, Equatable {
    public var newAlerts = 0
    public var duplicates = 0
    /// Alerts queued, counted once per sink they wait for (what `max_outbox` counts).
    public var queuedForSinks = 0
    /// Elements quarantined by this admission (not those quarantined before).
    public var quarantined: [RejectedElement] = []
    /// The alerts admitted (new), as they came.
    public var admitted: [Alert] = []
}

/// A tenant's state, for `state show`.
public struct TenantState: Sendable, Equatable {
    public var tenant: String
    public var watermark: String?
    public var dedupKeys: Int
}

/// The dedup key of an alert: its id, or with `forward = "updates"` its id and update time.
func dedupKey(of alert: Alert, forward: ForwardMode) -> String {
    forward == .new ? alert.id : "\(alert.id)|\(alert.lastUpdateTime.ticks)"
}
