import DefenderAPI
import Foundation
import Timekeeping

/// The outbox: each admitted alert waits for each of its sinks until that sink confirms it;
/// per sink, in the order admitted. Records a sink refuses for good become dead letters
/// (``DeadLetterStore``) in the transaction that confirms them.
public protocol OutboxStore: Sendable {
    /// The next `limit` records for `sink`: dead letters re-queued for it first (a front lane:
    /// they do not wait behind the backlog), oldest first; else the oldest queued.
    func pending(sink: String, limit: Int) async throws(StateError) -> OutboxBatch

    /// Moves the sink past a batch it delivered (a batch read before is confirmed once); the
    /// records it refused for good become dead letters in the same transaction. A batch of
    /// re-queued dead letters: those delivered are deleted, those refused again stay dead
    /// letters (no longer marked) with the new reason.
    func confirm(_ batch: OutboxBatch, rejected: [SinkRejection], now: Date) async throws(StateError)

    /// Alerts waiting, per sink (sinks with none are left out).
    func depth() async throws(StateError) -> [String: Int]

    /// When the oldest alert waiting for `sink` was received, if one waits.
    func oldestPending(sink: String) async throws(StateError) -> Date?

    /// Forgets the sinks no longer configured and what waited for them; returns how many alerts.
    @discardableResult
    func drop(except sinks: Set<String>) async throws(StateError) -> Int
}

extension OutboxStore {
    public func confirm(_ batch: OutboxBatch, rejected: [SinkRejection] = []) async throws(StateError) {
        try await confirm(batch, rejected: rejected, now: Date())
    }
}

/// One alert waiting for one sink, with the fields every sink shows.
public struct OutboxRecord: Sendable, Equatable {
    /// The record's sequence number in the outbox (delivery order), or a re-queued dead
    /// letter's id.
    public var id: Int64
    public var sink: String
    public var tenant: String
    public var alertID: String
    /// `created` or `updated`.
    public var event: String
    /// An alert, or an incident (`alertID` is then the incident's id).
    public var kind: RecordKind
    /// When the daemon stored it (ISO 8601, UTC).
    public var receivedAt: String
    /// Severity, title, device, status and update time, as the alert's JSON has them: as the
    /// state stored them (PostgreSQL's columns), else read from the payload when a sink asks
    /// (a sink that writes the payload as it came never pays for them). A sink reads it once
    /// per record.
    public var headline: AlertHeadline {
        get { storedHeadline ?? AlertHeadline(payload: payloadBytes) }
        set { storedHeadline = newValue }
    }
    private var storedHeadline: AlertHeadline?
    /// The alert exactly as the API returned it, byte for byte (changing it reads the
    /// headline from it again).
    public var payloadBytes: [UInt8] {
        didSet { storedHeadline = nil }
    }

    /// The same as text.
    public var payload: String {
        get { String(decoding: payloadBytes, as: UTF8.self) }
        set { payloadBytes = Array(newValue.utf8) }
    }

    /// A record with the headline the state stored (nil: read from the payload when asked).
    public init(
        id: Int64, sink: String, tenant: String, alertID: String, event: String, receivedAt: String, headline: AlertHeadline? = nil,
        payloadBytes: [UInt8], kind: RecordKind = .alert
    ) {
        self.id = id
        self.kind = kind
        self.sink = sink
        self.tenant = tenant
        self.alertID = alertID
        self.event = event
        self.receivedAt = receivedAt
        self.storedHeadline = headline
        self.payloadBytes = payloadBytes
    }

    public init(
        id: Int64, sink: String, tenant: String, alertID: String, event: String, receivedAt: String, payload: String,
        kind: RecordKind = .alert
    ) {
        self.init(
            id: id, sink: sink, tenant: tenant, alertID: alertID, event: event, receivedAt: receivedAt, payloadBytes: Array(payload.utf8),
            kind: kind)
    }

    /// The same record with these bytes, and the headline the state stored with it, if any.
    func with(payloadBytes: [UInt8]) -> OutboxRecord {
        OutboxRecord(
            id: id, sink: sink, tenant: tenant, alertID: alertID, event: event, receivedAt: receivedAt, headline: storedHeadline,
            payloadBytes: payloadBytes, kind: kind)
    }

    /// The same fields and the same headline, whether stored or read from the payload.
    public static func == (left: OutboxRecord, right: OutboxRecord) -> Bool {
        (left.id, left.sink, left.tenant, left.alertID, left.event, left.receivedAt) == (
            right.id, right.sink, right.tenant, right.alertID, right.event, right.receivedAt
        )
            && left.kind == right.kind && left.payloadBytes == right.payloadBytes && left.headline == right.headline
    }
}

/// Records read for one sink, and what confirming them moves.
public struct OutboxBatch: Sendable {
    public let sink: String
    public let records: [OutboxRecord]
    /// Where the records came from; the store that read them reads it back at confirmation.
    let receipt: Receipt

    /// What a confirmation moves, by where the records were read.
    enum Receipt: Sendable, Equatable {
        /// Read from the embedded outbox log: the sink's position moves from `start` to `next`.
        case log(start: LogPosition, next: LogPosition)
        /// Dead letters re-queued (`state dead-letters --requeue`), read ahead of the outbox
        /// (their ids are the dead letters' ids): confirming deletes them, moving nothing.
        case requeued
        /// Read from PostgreSQL: confirming deletes the sink's rows of these records.
        case rows
    }

    init(sink: String, records: [OutboxRecord], receipt: Receipt) {
        self.sink = sink
        self.records = records
        self.receipt = receipt
    }

    /// Whether the records are dead letters re-queued.
    public var requeued: Bool { receipt == .requeued }

    /// Whether confirming moves the sink on: it read records, or passed records of other sinks.
    public var advances: Bool {
        switch receipt {
        case .requeued, .rows: !records.isEmpty
        case .log(let start, let next): next.sequence > start.sequence
        }
    }
}
