import Foundation

/// Each tenant's reconciliation sweeps: when the next is due (a restart keeps the schedule),
/// when the last ended and how many alerts it found.
public protocol ScheduleStore: Sendable {
    /// The tenant's reconciliation schedule, if one was made.
    func reconciliation(tenant: String) async throws(StateError) -> Reconciliation?
    /// Schedules the tenant's next sweep; after a sweep, also records when it ended and what it found.
    func scheduleReconciliation(tenant: String, due: Date, sweptAt: Date?, found: Int?) async throws(StateError)
}

extension ScheduleStore {
    public func scheduleReconciliation(tenant: String, due: Date) async throws(StateError) {
        try await scheduleReconciliation(tenant: tenant, due: due, sweptAt: nil, found: nil)
    }
}

/// A tenant's reconciliation schedule.
public struct Reconciliation: Sendable, Equatable {
    public var due: Date
    public var sweptAt: Date?
    public var found: Int?
}
