import Foundation

/// Records sinks refused for good, with the receiver's reason, until a person sends them again
/// or deletes them (`state dead-letters`).
public protocol DeadLetterStore: Sendable {
    /// The dead letters, oldest first (of one sink, or all).
    func deadLetters(sink: String?) async throws(StateError) -> [DeadLetter]
    /// Dead letters per sink, for `STATUS=`.
    func counts() async throws(StateError) -> [String: Int]
    /// Marks dead letters to be sent again; returns how many are marked. Safe while the daemon
    /// runs: its sink workers read marked dead letters ahead of the outbox with their next
    /// batch (``OutboxStore/pending(sink:limit:)``), and delete each once delivered.
    @discardableResult
    func markForRequeue(sink: String?) async throws(StateError) -> Int
    /// Deletes dead letters (of one sink, or all); returns how many.
    @discardableResult
    func purge(sink: String?) async throws(StateError) -> Int
}

/// A record a sink refused for good.
public struct DeadLetter: Sendable, Equatable {
    public var id: Int64
    public var sink: String
    public var tenant: String
    public var alertID: String
    public var event: String
    public var reason: String
    public var failedAt: String
    public var markedForRequeue: Bool
}

/// Elements of API answers that are not alerts the daemon can read, kept with their bytes
/// (`state quarantine`); admission adds them.
public protocol QuarantineStore: Sendable {
    /// The quarantined elements, oldest first (of one tenant, or all).
    func elements(tenant: String?) async throws(StateError) -> [QuarantinedElement]
    /// Quarantined elements per tenant, for `STATUS=`.
    func counts() async throws(StateError) -> [String: Int]
    /// Deletes quarantined elements (of one tenant, or all); returns how many.
    @discardableResult
    func purge(tenant: String?) async throws(StateError) -> Int
}

/// An element of an API answer kept in quarantine.
public struct QuarantinedElement: Sendable, Equatable {
    public var id: Int64
    public var tenant: String
    public var reason: String
    public var quarantinedAt: String
    public var bytes: Data
}

extension DeadLetterStore {
    /// Every dead letter, oldest first.
    public func all() async throws(StateError) -> [DeadLetter] { try await deadLetters(sink: nil) }
}

extension QuarantineStore {
    /// Every quarantined element, oldest first.
    public func all() async throws(StateError) -> [QuarantinedElement] { try await elements(tenant: nil) }
}
