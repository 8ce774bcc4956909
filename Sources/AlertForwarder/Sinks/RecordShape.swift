import DefenderAPI
import SIEMSchemas

/// The shape a sink writes records in: the schema (`schema`), one record or one per evidence
/// entity (`evidence`), and whether a mapped record carries the original JSON
/// (`include_original`). The default is the record exactly as Defender returned it.
public struct RecordShape: Sendable, Equatable {
    public enum Schema: String, Sendable, CaseIterable {
        /// Defender's JSON, byte for byte.
        case native
        /// Elastic Common Schema documents (``ECSMapping``).
        case ecs
        /// OCSF Detection Findings and Incident Findings (``OCSFMapping``).
        case ocsf
    }

    public enum Evidence: String, Sendable, CaseIterable {
        /// One record per alert, its evidence inside.
        case inline
        /// One record per evidence entity, each with the alert's id and summary; the alert's
        /// records are delivered (or retried) together.
        case split
    }

    public var schema: Schema
    public var evidence: Evidence
    /// `event.original` (ECS) or `raw_data` (OCSF).
    public var includeOriginal: Bool

    public init(schema: Schema = .native, evidence: Evidence = .inline, includeOriginal: Bool = false) {
        (self.schema, self.evidence, self.includeOriginal) = (schema, evidence, includeOriginal)
    }

    public static let native = RecordShape()

    /// The record's documents as JSON bytes: one (the payload itself when native and inline),
    /// or one per evidence entity. nil when the payload is not JSON, which only a state edited
    /// by hand holds: such a record cannot be mapped and becomes a dead letter.
    func documents(for record: OutboxRecord) -> [[UInt8]]? {
        if self == .native { return [record.payloadBytes] }
        let kind: DefenderRecord.Kind = record.kind == .incident ? .incident : .alert
        guard
            let defenderRecord = DefenderRecord(
                kind: kind, tenant: record.tenant, event: record.event, receivedAt: record.receivedAt,
                payload: record.payloadBytes)
        else { return nil }
        let split = evidence == .split
        let documents =
            switch schema {
            case .native: NativeEvidenceSplit.documents(for: defenderRecord)
            case .ecs: ECSMapping.documents(for: defenderRecord, split: split, original: includeOriginal)
            case .ocsf: OCSFMapping.events(for: defenderRecord, split: split, original: includeOriginal)
            }
        return documents.map { Array($0.serialized.utf8) }
    }

    /// The reason a record that `documents(for:)` cannot shape is refused.
    func refusal(of record: OutboxRecord) -> SinkRejection {
        SinkRejection(
            recordID: record.id,
            reason: "the \(record.kind.rawValue) is not JSON, so it cannot be written as \(schema.rawValue)"
                + (evidence == .split ? " with evidence split" : ""))
    }
}
