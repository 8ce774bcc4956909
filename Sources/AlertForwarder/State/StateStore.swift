import Foundation

/// The daemon's durable state, by concern, each part behind its own protocol: admission
/// (watermarks and dedup keys), the outbox, dead letters, quarantine and sweep schedules.
/// ``embedded(directory:segmentSize:access:)`` keeps them in `state_directory` (SQLite and
/// the outbox log), as every release has.
public struct StateStore: Sendable {
    public let admission: any AdmissionStore
    public let outbox: any OutboxStore
    public let deadLetters: any DeadLetterStore
    public let quarantine: any QuarantineStore
    public let schedules: any ScheduleStore
    /// Where the state is, for messages (the database file's path).
    public let location: String

    /// Dedup keys are kept this long (Defender keeps alerts about 180 days; an alert updated
    /// within that time must not be mistaken for a new one).
    public static let dedupRetention: Duration = .seconds(180 * 86_400)

    /// Who opens the state.
    public enum Access: Sendable {
        /// The daemon or `poll-once`: the one writer of the outbox log. It holds the state
        /// directory's lock for as long as the store lives (a second owner is refused, never
        /// let in to interleave its appends), and on opening cuts the log back to what was
        /// committed (an append cut short by a crash).
        case owner
        /// The `state` commands and a dry run: they read, and change only the database (which
        /// SQLite serializes), never the outbox log's files, which a running daemon may be
        /// appending to at that very moment: its bytes are on disk a moment before the commit
        /// that counts them, and cutting them off then loses alerts.
        case inspector
    }

    /// The state in `directory` (created 0700 when absent): SQLite (`state.sqlite`) and the
    /// outbox log (`outbox/`). `segmentSize` is for tests: how large an outbox segment grows
    /// before the next one starts.
    public static func embedded(directory: String, segmentSize: Int64 = 64 << 20, access: Access = .owner) throws(StateError) -> StateStore {
        let database = try EmbeddedDatabase(directory: directory, segmentSize: segmentSize, access: access)
        return StateStore(admission: EmbeddedAdmission(database: database), outbox: EmbeddedOutbox(database: database),
                          deadLetters: EmbeddedDeadLetters(database: database), quarantine: EmbeddedQuarantine(database: database),
                          schedules: EmbeddedSchedules(database: database), location: database.path)
    }
}

extension StateStore {
    /// Opens the configured state as `access`: in `state_directory`. A `state_database` is
    /// refused for now (see ``groupNotYetRunnable``).
    public static func open(_ service: ServiceSettings, access: Access = .owner) throws(StateError) -> StateStore {
        if service.stateDatabase != nil { throw StateError(.incompatible, groupNotYetRunnable) }
        return try embedded(directory: service.stateDirectory, access: access)
    }

    /// Why `state_database` does not run yet: its stores are here and tested against a real
    /// server, but without the tenant leases two daemons sharing it would both poll every
    /// tenant and deliver every alert twice.
    public static let groupNotYetRunnable = "state_database: this version keeps the state in PostgreSQL only in its tests; the daemon and the state commands do not run on it yet, because the tenant leases that stop two daemons of a group from polling one tenant (and delivering every alert twice) are not in this version; remove state_database to keep the state in state_directory"

    /// The state in PostgreSQL (`state_database`). `database` must run (it is a service) for
    /// any call to be answered.
    public static func postgres(_ database: StateDatabase) -> StateStore {
        StateStore(admission: PostgresAdmission(database: database), outbox: PostgresOutbox(database: database),
                   deadLetters: PostgresDeadLetters(database: database), quarantine: PostgresQuarantine(database: database),
                   schedules: PostgresSchedules(database: database), location: database.settings.url)
    }
}
