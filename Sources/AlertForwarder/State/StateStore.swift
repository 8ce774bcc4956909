import Foundation

/// The daemon's durable state, by concern, each part behind its own protocol: admission
/// (watermarks and dedup keys), the outbox, dead letters, quarantine, sweep schedules, and
/// what room all of it takes.
/// ``embedded(directory:segmentSize:access:)`` keeps them in `state_directory` (SQLite and
/// the outbox log), as every release has.
public struct StateStore: Sendable {
    public let admission: any AdmissionStore
    public let outbox: any OutboxStore
    public let deadLetters: any DeadLetterStore
    public let quarantine: any QuarantineStore
    public let schedules: any ScheduleStore
    public let storage: any StorageStore
    /// Where the state is, for messages (the database file's path).
    public let location: String
    /// Ends the store's use at the end of a run: the embedded database writes its log back
    /// into the database file and closes, whatever may still hold the store (a task that
    /// outlives the stop). PostgreSQL's client ends as a service of its own.
    var finish: @Sendable () async -> Void = {}

    /// Ends the store's use (see ``finish``); later calls fail.
    public func close() async { await finish() }

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
        return StateStore(
            admission: EmbeddedAdmission(database: database), outbox: EmbeddedOutbox(database: database),
            deadLetters: EmbeddedDeadLetters(database: database), quarantine: EmbeddedQuarantine(database: database),
            schedules: EmbeddedSchedules(database: database), storage: EmbeddedStorage(database: database),
            location: database.path, finish: { await database.close() })
    }
}

extension StateStore {
    /// The embedded state of `service` (`state_directory`), opened as `access`. With
    /// `state_database` the daemon and the `state` commands open PostgreSQL instead;
    /// `poll-once` and dry runs are for a daemon alone, and refuse it.
    public static func open(_ service: ServiceSettings, access: Access = .owner) throws(StateError) -> StateStore {
        if service.stateDatabase != nil {
            throw StateError(
                .incompatible,
                "state_database: poll-once and --dry-run work on the state of a daemon alone; a group on PostgreSQL polls with its daemons (systemctl start defender-alertd on each member)"
            )
        }
        return try embedded(directory: service.stateDirectory, access: access)
    }

    /// The state in PostgreSQL (`state_database`). `database` must run (it is a service) for
    /// any call to be answered.
    /// `fence`: in a group, the leases that decide which tenants this daemon admits and delivers.
    public static func postgres(_ database: StateDatabase, fence: GroupFence? = nil) -> StateStore {
        let recent = RecentPayloads()
        return StateStore(
            admission: PostgresAdmission(database: database, fence: fence, recent: recent),
            outbox: PostgresOutbox(database: database, fence: fence, recent: recent),
            deadLetters: PostgresDeadLetters(database: database), quarantine: PostgresQuarantine(database: database),
            schedules: PostgresSchedules(database: database), storage: PostgresStorage(database: database),
            location: database.settings.url)
    }
}
