import DefenderAPI
import Foundation
import Timekeeping

/// Where a tenant's records of one kind are admitted: its alerts, or its incidents, each
/// with a watermark and dedup keys of their own, kept under ``key``.
public struct RecordStream: Sendable, Hashable {
    public var tenant: String
    public var kind: RecordKind

    public init(tenant: String, kind: RecordKind = .alert) {
        self.tenant = tenant
        self.kind = kind
    }

    /// The key of the stream's watermark and dedup keys: the tenant's name for its
    /// alerts (as before incidents came), `NAME/incidents` for its incidents (a tenant's name
    /// has no `/`).
    public var key: String { kind == .alert ? tenant : "\(tenant)/\(kind.plural)" }

    /// The keys of every stream of `tenant`.
    static func keys(of tenant: String) -> [String] {
        RecordKind.allCases.map { RecordStream(tenant: tenant, kind: $0).key }
    }
}

/// Admission: per tenant and kind of record the watermark and the dedup keys. Admitting a
/// page is one transaction: known records are skipped, new ones are queued in the outbox for
/// their sinks (with their tenant and kind), elements that cannot be read are quarantined, and
/// the watermark moves.
public protocol AdmissionStore: Sendable {
    /// The stream's watermark: the newest update time stored, or `nil` before the first poll.
    func watermark(of stream: RecordStream) async throws(StateError) -> Timestamp?

    /// Admits one page in one transaction: skips known keys, records new ones, queues each new
    /// alert once for its sinks, and moves the watermark as `watermark` says (never back). A
    /// crash before the commit leaves nothing; after it, all. `storesHeadline`: one of the
    /// sinks shows the alert's headline (``SinkConfiguration/showsHeadline``), which is then
    /// decoded here and stored with the alert; else a sink that asks reads it from the bytes.
    func admit(
        stream: RecordStream, alerts: [Alert], rejected: [RejectedElement], forward: ForwardMode, sinks: [String], storesHeadline: Bool,
        now: Date, watermark: WatermarkMove
    ) async throws(StateError) -> Admission

    /// Whether an alert (or incident: its ``Alert/kind``) was already forwarded (read only:
    /// for dry runs).
    func isKnown(tenant: String, alert: Alert, forward: ForwardMode) async throws(StateError) -> Bool

    /// Forgets a tenant's cursors, dedup keys and sweep schedules, of its alerts and incidents
    /// (its queued records stay queued).
    func reset(tenant: String) async throws(StateError)

    /// Deletes dedup keys older than ``StateStore/dedupRetention``; returns how many. Age is
    /// measured per tenant from the earlier of the local clock and the tenant's watermark (the
    /// server's clock): a local clock set 200 days ahead must not prune keys still needed.
    func pruneDedupKeys(now: Date) async throws(StateError) -> Int

    /// Every tenant with state, for `state show`.
    func tenants() async throws(StateError) -> [TenantState]
}

extension AdmissionStore {
    public func admit(
        stream: RecordStream, alerts: [Alert], rejected: [RejectedElement] = [], forward: ForwardMode, sinks: [String],
        storesHeadline: Bool = true, now: Date = Date(), watermark: WatermarkMove = .byAlerts
    ) async throws(StateError) -> Admission {
        try await admit(
            stream: stream, alerts: alerts, rejected: rejected, forward: forward, sinks: sinks, storesHeadline: storesHeadline,
            now: now, watermark: watermark)
    }

    /// Admits alerts of `tenant`.
    public func admit(
        tenant: String, alerts: [Alert], rejected: [RejectedElement] = [], forward: ForwardMode, sinks: [String],
        storesHeadline: Bool = true, now: Date = Date(), watermark: WatermarkMove = .byAlerts
    ) async throws(StateError) -> Admission {
        try await admit(
            stream: RecordStream(tenant: tenant), alerts: alerts, rejected: rejected, forward: forward, sinks: sinks,
            storesHeadline: storesHeadline, now: now, watermark: watermark)
    }

    /// The watermark of `tenant`'s alerts.
    public func watermark(tenant: String) async throws(StateError) -> Timestamp? {
        try await watermark(of: RecordStream(tenant: tenant))
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
