import AlertForwarder
import ArgumentParser
import DefenderAPI
import Foundation
import Logging
import Timekeeping

/// `defender-alertd state show|reset`.
struct StateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Inspect or reset the cursor, dedup keys, outbox, dead letters and quarantine.",
        subcommands: [Show.self, Reset.self, DeadLetters.self, Quarantine.self, Migrate.self]
    )

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Watermark, dedup keys and quarantine per tenant, outbox depth and dead letters per sink, the room each part of the state takes.")
        @OptionGroup var options: ConfigOption
        @Option(help: "Only this tenant.") var tenant: String?

        func run() async throws {
            let configuration = try loadConfiguration(options.config)
            try await withStore(configuration) { store in try await show(configuration, store) }
        }

        private func show(_ configuration: Configuration, _ store: StateStore) async throws {
            let states = try await store.admission.tenants()
            let quarantined = try await store.quarantine.counts()
            for configured in configuration.tenants where tenant == nil || tenant == configured.name {
                let name = configured.name
                let state = states.first { $0.tenant == name }
                var line =
                    "tenant \(name): watermark \(state?.watermark ?? "none (first poll fetches lookback)"), \(state?.dedupKeys ?? 0) dedup keys, \(quarantined[name] ?? 0) quarantined"
                if !configured.reconciles {
                    line += ", no reconciliation sweeps"
                } else if let sweeps = try await store.schedules.reconciliation(tenant: name) {
                    let time = { (date: Date) in Timestamp(date).writtenWith(0).description }
                    line += ", next sweep \(time(sweeps.due))"
                    if let sweptAt = sweeps.sweptAt { line += " (last \(time(sweptAt)), found \(sweeps.found ?? 0))" }
                }
                print(line)
            }
            let depth = try await store.outbox.depth()
            let deadLetters = try await store.deadLetters.counts()
            for sink in configuration.sinks {
                print("sink \(sink.name): \(depth[sink.name] ?? 0) alerts queued, \(deadLetters[sink.name] ?? 0) dead letters")
            }
            guard tenant == nil else { return }
            for use in try await store.storage.storage() {
                let rows = use.rows.map { "\($0) rows" }
                let bytes = use.bytes.map { "\($0) bytes (\(ByteCountFormatter.string(fromByteCount: $0, countStyle: .binary)))" }
                print("storage \(use.name): \([rows, bytes].compactMap { $0 }.joined(separator: ", "))")
            }
        }
    }

    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forget a tenant's cursor and dedup keys: the next poll starts from lookback and may deliver alerts again.")
        @OptionGroup var options: ConfigOption
        @Option(help: "The tenant to reset.") var tenant: String
        @Flag(help: "Confirm.") var yes = false

        func run() async throws {
            let configuration = try loadConfiguration(options.config)
            guard configuration.tenants.contains(where: { $0.name == tenant }) else {
                throw ValidationError("no [[tenant]] named \"\(tenant)\"")
            }
            guard yes else {
                throw ValidationError(
                    "resetting \(tenant) makes the next poll fetch `lookback` again and re-deliver what it finds; add --yes to confirm")
            }
            // As the owner: refused while the daemon runs (it would poll on from the old cursor).
            try await withStore(configuration, access: .owner) { store in try await store.admission.reset(tenant: tenant) }
            print("tenant \(tenant): cursor and dedup keys forgotten")
        }
    }

    struct DeadLetters: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dead-letters",
            abstract: "List the alerts a sink refused for good, send them again (--requeue) or drop them (--purge).",
            discussion: """
                Re-queued alerts go ahead of the alerts queued for the sink: a running daemon \
                sends them with the sink's next batch (within seconds), a stopped one when it \
                starts (or poll-once). Each stays a dead letter until the sink took it; refused \
                again, it stays one with the new reason.
                """)
        @OptionGroup var options: ConfigOption
        @Option(help: "Only this sink.") var sink: String?
        @Flag(help: "Send them to the sink again.") var requeue = false
        @Flag(help: "Delete them.") var purge = false

        func validate() throws {
            if requeue && purge { throw ValidationError("--requeue and --purge exclude each other") }
        }

        func run() async throws {
            let configuration = try loadConfiguration(options.config)
            if let sink, !configuration.sinks.contains(where: { $0.name == sink }) {
                throw ValidationError("no [[sink]] named \"\(sink)\"")
            }
            try await withStore(configuration) { store in try await run(store) }
        }

        private func run(_ store: StateStore) async throws {
            let scope = sink.map { "sink \($0)" } ?? "all sinks"
            if requeue {
                print(
                    "\(try await store.deadLetters.markForRequeue(sink: sink)) dead letters of \(scope) marked to be sent again, ahead of the alerts queued; the daemon sends them with its next batch for the sink (within seconds, or when it starts)"
                )
            } else if purge {
                print("\(try await store.deadLetters.purge(sink: sink)) dead letters of \(scope) deleted")
            } else {
                let letters = try await store.deadLetters.deadLetters(sink: sink)
                for letter in letters {
                    let mark = letter.markedForRequeue ? " (re-queue requested)" : ""
                    // The alert id came from the API: shown like the reason, printable.
                    print(
                        "\(letter.failedAt) sink \(letter.sink) tenant \(letter.tenant) alert \(SecretRedaction.shown(letter.alertID, limit: 200)) (\(letter.event))\(mark): \(SecretRedaction.shown(letter.reason))"
                    )
                }
                print("\(letters.count) dead letters (\(scope))")
            }
        }
    }
}

extension StateCommand {
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move the state of state_directory into the PostgreSQL database of state_database, for a group.",
            discussion: """
                Stop the daemon, set state_database (and its password) in the configuration, \
                then run this once: watermarks, dedup keys, queued alerts with the sinks still \
                waiting for them, dead letters, quarantine and sweep schedules move in one \
                transaction into an empty database, and the signed-in users' refresh tokens \
                (sealed with the token key). Nothing is lost or delivered again; the \
                directory is then marked moved, and no daemon uses it any more.
                """)
        @OptionGroup var options: ConfigOption
        @Option(help: ArgumentHelp("The state directory to move (default: state_directory of the configuration).", valueName: "path"))
        var from: String?
        @Option(
            help: ArgumentHelp(
                "The PostgreSQL database to move it into, as a check: it must be state_database of the configuration, which the group's members use.",
                valueName: "postgresql://user@host/db"))
        var to: String?

        func run() async throws {
            let configuration = try loadConfiguration(options.config)
            guard let settings = configuration.service.stateDatabase else {
                throw ValidationError(
                    "the configuration has no state_database to move the state into: set state_database (and state_database_password_file) first; the group's members read it from there"
                )
            }
            if let to {
                switch settings.isNamed(by: to) {
                case .failure(let error): throw ValidationError("--to: \(error.description)")
                case .success(false):
                    throw ValidationError(
                        "--to names another database than state_database (\(settings.url)): the state must go where the group's members will read it")
                case .success(true): break
                }
            }
            let directory = from ?? configuration.service.stateDirectory
            guard FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent("state.sqlite")) else {
                throw ValidationError("\(directory) holds no state (no state.sqlite)")
            }
            let database: StateDatabase
            do { database = try StateDatabase(settings: settings, logger: Logger(label: "defender-alertd")) } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                throw ExitCode.failure
            }
            let seals = configuration.userTokenSeals
            let summary: StateMigration.Summary
            do {
                summary = try await database.whileRunning {
                    try await StateMigration.embeddedToPostgres(directory: directory, database: database, userTokens: seals)
                }
            } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                throw ExitCode.failure
            }
            print("moved \(summary) from \(directory) to \(settings.url); \(directory) is marked moved")
        }
    }

    struct Quarantine: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the elements of API answers that could not be read, print one's bytes (--raw ID) or drop them (--purge).",
            discussion: """
                An element of an alerts page that is not valid JSON, or has no id or no valid \
                lastUpdateTime, is kept here with its bytes exactly as they came, once; the rest \
                of its page is forwarded.
                """)
        @OptionGroup var options: ConfigOption
        @Option(help: "Only this tenant.") var tenant: String?
        @Option(help: "Write the bytes of this element to standard output, as they came.") var raw: Int64?
        @Flag(help: "Delete them.") var purge = false

        func run() async throws {
            let configuration = try loadConfiguration(options.config)
            if let tenant, !configuration.tenants.contains(where: { $0.name == tenant }) {
                throw ValidationError("no [[tenant]] named \"\(tenant)\"")
            }
            try await withStore(configuration) { store in try await run(store) }
        }

        private func run(_ store: StateStore) async throws {
            let scope = tenant.map { "tenant \($0)" } ?? "all tenants"
            if purge {
                print("\(try await store.quarantine.purge(tenant: tenant)) quarantined elements of \(scope) deleted")
            } else if let raw {
                guard let element = try await store.quarantine.elements(tenant: tenant).first(where: { $0.id == raw }) else {
                    throw ValidationError("no quarantined element \(raw) (of \(scope))")
                }
                FileHandle.standardOutput.write(element.bytes)
            } else {
                let elements = try await store.quarantine.elements(tenant: tenant)
                for element in elements {
                    print(
                        "\(element.id) \(element.quarantinedAt) tenant \(element.tenant) (\(element.bytes.count) bytes): \(SecretRedaction.shown(element.reason))"
                    )
                }
                print("\(elements.count) quarantined elements (\(scope))")
            }
        }
    }
}

/// Runs `body` with the configured state: the embedded one, or PostgreSQL (its client runs
/// while `body` does; a group's daemons may run meanwhile: these commands take no lease).
func withStore(
    _ configuration: Configuration, access: StateStore.Access = .inspector,
    _ body: @escaping @Sendable (StateStore) async throws -> Void
) async throws {
    do {
        guard let settings = configuration.service.stateDatabase else {
            try await body(try StateStore.open(configuration.service, access: access))
            return
        }
        try await withStateDatabase(settings) { database in try await body(StateStore.postgres(database)) }
    } catch let error as StateError {
        FileHandle.standardError.write(Data("\(error)\n".utf8))
        throw ExitCode.failure
    }
}

/// Runs `body` with where the signed-in users' refresh tokens are: the state directory, or
/// PostgreSQL (its client running while `body` does).
func withUserTokens(_ configuration: Configuration, _ body: @escaping @Sendable (UserTokenStorage) async throws -> Void) async throws {
    guard let settings = configuration.service.stateDatabase else {
        try await body(configuration.service.userTokens())
        return
    }
    do {
        try await withStateDatabase(settings) { database in try await body(configuration.service.userTokens(in: database)) }
    } catch let error as StateError {
        FileHandle.standardError.write(Data("\(error)\n".utf8))
        throw ExitCode.failure
    }
}

/// Runs `body` while a client of the PostgreSQL state runs (it ends when `body` does).
private func withStateDatabase(_ settings: StateDatabaseSettings, _ body: @escaping @Sendable (StateDatabase) async throws -> Void) async throws {
    let database = try StateDatabase(settings: settings, logger: Logger(label: "defender-alertd"))
    try await database.whileRunning { try await body(database) }
}
