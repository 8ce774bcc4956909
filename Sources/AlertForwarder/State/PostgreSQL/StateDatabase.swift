import _ConnectionPoolModule
import DefenderAPI
import Foundation
import Logging
import NIOSSL
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// The state in PostgreSQL, shared by a group of daemons: the client (postgres-nio's pool,
/// which reconnects by itself), the schema's migrations, and the mapping of its failures to
/// ``StateError`` kinds. A ``Service``: it runs the pool and migrates the schema; every
/// query of the state's parts waits until that is done.
public final class StateDatabase: Service, Sendable {
    let client: PostgresClient
    let settings: StateDatabaseSettings
    /// For the check at start: one connection made directly, whose failure says why (the
    /// pool only says that it has none).
    private let checkConfiguration: PostgresConnection.Configuration
    let logger: Logger
    /// Set once the schema is migrated (or failed to be); unavailable while an outage lasts.
    private let ready = Gate()
    /// Calls that met the server unreachable (a connection broke, or none came in time): the
    /// service checks it again.
    private let outages: AsyncStream<Void>.Continuation
    private let outageReports: AsyncStream<Void>
    /// How long a call waits for a connection of the pool before it fails as unavailable
    /// (postgres-nio's pool lets a request wait a minute while it cannot connect).
    let connectionWait: Duration
    /// How long a call may run on its connection before the connection is closed under it (the
    /// server ends the transaction): a server that stopped answering (a partition that drops
    /// nothing, a host stopped) would hold it forever. Longer than `statement_timeout`.
    let callDeadline: Duration

    /// `member`: this daemon's name in a group, shown in the server's `pg_stat_activity`.
    /// `connectionWait`: how long a call waits for a connection before it fails as unavailable;
    /// `callDeadline`: how long it may run on it.
    public init(settings: StateDatabaseSettings, member: String? = nil, connectionWait: Duration = .seconds(5),
                callDeadline: Duration = .seconds(45), logger: Logger) throws(StateError) {
        self.settings = settings
        self.logger = logger
        self.connectionWait = connectionWait
        self.callDeadline = callDeadline
        (outageReports, outages) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        var tls: PostgresClient.Configuration.TLS = .disable
        var checkTLS: PostgresConnection.Configuration.TLS = .disable
        if settings.tls != .disable {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.minimumTLSVersion = .tlsv12
            if let caFile = settings.caFile { configuration.trustRoots = .file(caFile) }
            configuration.certificateVerification = switch settings.tls {
            case .verifyFull: .fullVerification
            case .verifyCA: .noHostnameVerification
            case .require, .disable: .none
            }
            // The client keeps its TLS context (or its failure) for its life: checked here.
            do { checkTLS = .require(try NIOSSLContext(configuration: configuration)) } catch {
                throw StateError(.incompatible, "state_database: TLS cannot be set up (\(error)); check state_database_ca_file")
            }
            tls = .require(configuration)
        }
        var configuration = PostgresClient.Configuration(host: settings.host, port: settings.port, username: settings.user,
                                                         password: settings.password?.withValue { $0 }, database: settings.database, tls: tls)
        configuration.options.connectTimeout = .seconds(10)
        // At least one: a pool of none can strand a request (postgres-nio issue 657).
        configuration.options.minimumConnections = 1
        configuration.options.maximumConnections = 8
        // A statement or a lock that hangs (a server overloaded, a lock held by a daemon cut
        // off) fails instead of holding a poll or a sink forever; the work is retried.
        configuration.options.additionalStartupParameters = [
            ("application_name", member.map { "defender-alertd \($0)".prefix(63) }.map(String.init) ?? "defender-alertd"),
            ("statement_timeout", "30000"),
            ("lock_timeout", "10000"),
            ("idle_in_transaction_session_timeout", "60000"),
        ]
        client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        var check = PostgresConnection.Configuration(host: settings.host, port: settings.port, username: settings.user,
                                                     password: settings.password?.withValue { $0 }, database: settings.database, tls: checkTLS)
        check.options.connectTimeout = .seconds(10)
        checkConfiguration = check
    }

    /// Runs the pool, checks the connection and migrates the schema, then serves until
    /// cancelled or shut down gracefully. While the server cannot be reached, the check is
    /// tried again (after 1 s, 2 s, 4 s, then every 5 s) and every call of the state fails at once
    /// with `unavailable` (the pipeline waits and retries); a refusal that waiting cannot end
    /// (a wrong password, no such database, a newer schema) stops the daemon with its reason.
    /// Once in use, a call that finds the server unreachable has it checked again at once: an
    /// outage is logged (once) and closes the gate until the server answers again.
    ///
    /// It is the last service of the daemon to stop, when nothing else queries: postgres-nio's
    /// pool, stopped while a transaction is on one of its connections (a stop during the
    /// migration at start), was seen not to finish stopping; systemd's stop timeout ends that.
    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.client.run() }
            var wait: Duration = .seconds(1)
            var reported: String?
            var migrated = false
            while !Task.isCancelled, !Task.isShuttingDownGracefully {
                do {
                    try await check()
                    if !migrated { try await PostgresSchema.migrate(self) }
                    migrated = true
                    ready.open()
                    if reported != nil { logger.notice("PostgreSQL can be reached again; the state is in use", metadata: ["database": "\(settings.url)"]) }
                    reported = nil
                    wait = .seconds(1)
                    // In use until a call meets the server unreachable (or the daemon stops).
                    let outage = await cancelWhenGracefulShutdown { [outageReports] in
                        for await _ in outageReports { return true }
                        return false
                    }
                    if outage != true { break }
                    continue
                } catch {
                    let failure = Self.stateError(error, doing: "connection")
                    guard failure.isTransient else {
                        ready.fail(failure)
                        group.cancelAll()
                        throw failure
                    }
                    ready.unavailable(failure)
                    if reported != failure.description {
                        logger.error(migrated ? "PostgreSQL cannot be reached; admission, delivery and the group's leases wait for it"
                                              : "PostgreSQL cannot be used yet; polling and delivery wait for it",
                                     metadata: ["error": "\(failure)", "database": "\(settings.url)"])
                        reported = failure.description
                    }
                    // A stop ends the wait (and the retries) at once.
                    _ = await cancelWhenGracefulShutdown { [wait] in try? await Task.sleep(for: wait) }
                    // One connection attempt: cheap enough to make every 5 s, so that an
                    // outage ends for the daemon within seconds of the server's return.
                    wait = min(wait * 2, .seconds(5))
                }
            }
            // Stopped before the server could be used: nobody waits for it any more.
            ready.stopIfStarting(StateError(.unavailable, "the daemon is stopping"))
            outages.finish()
            try await group.waitForAll()
        }
    }

    /// Runs `body` while this client runs (its pool, the check and the migrations; for a
    /// command or a test, where no service group does), and ends the client once `body` has.
    public func whileRunning<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await self.run(); return nil }
            group.addTask { try await body() }
            defer { group.cancelAll() }
            while let next = try await group.next() {
                if let value = next { return value }
            }
            throw StateError(.unavailable, "the PostgreSQL client stopped")
        }
    }

    /// Connects once, directly, and disconnects: the server's own refusal if there is one
    /// (postgres-nio's pool only reports, after a minute, that it has no connection).
    private func check() async throws {
        let connection = try await PostgresConnection.connect(configuration: checkConfiguration, id: 0, logger: logger)
        try? await connection.close()
    }

    /// Waits for the schema, then runs `body` in one transaction, mapping its failure.
    func transaction<T: Sendable>(_ what: String, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws(StateError) -> T {
        let logger = self.logger
        return try await onConnection(what) { connection in try await connection.withTransaction(logger: logger) { try await body($0) } }
    }

    /// Waits for the schema, then runs one statement, its rows collected.
    func query(_ what: String, _ query: PostgresQuery) async throws(StateError) -> [PostgresRow] {
        let logger = self.logger
        return try await onConnection(what) { connection in try await connection.query(query, logger: logger).collect() }
    }

    /// Waits for the schema, then runs `work` on a connection of the pool, to its end whatever
    /// happens to the caller's task (as the embedded state's ``Blocking`` does): a transaction
    /// is committed or rolled back, never abandoned between two statements, where it would keep
    /// its rows locked (a tenant's lease row among them) until the server's idle timeout;
    /// postgres-nio ends a row iteration on cancellation. An unstructured task, awaited at
    /// once: the caller's cancellation does not reach it. The wait for a connection is bounded
    /// (``connectionWait``): a request still waiting then is abandoned (nothing runs on the
    /// connection it gets later), and the call fails as unavailable. So is the work (``callDeadline``): past it the connection is
    /// closed, which ends the transaction without a commit. A call that met the server
    /// unreachable reports an outage, and the service checks the server.
    ///
    /// (The two bounds were tried as timers of an event loop, taken off its heap when the call
    /// ends, which saved 6 % of the daemon's CPU in a backfill; twice under a loaded `make
    /// test` a call then never ended across a PostgreSQL restart or outage. Back to a task of
    /// their own until that is understood.)
    func onConnection<T: Sendable>(_ what: String, _ work: @escaping @Sendable (PostgresConnection) async throws -> T) async throws(StateError) -> T {
        try await ready.wait()
        let (client, connectionWait, callDeadline) = (self.client, self.connectionWait, self.callDeadline)
        let lease = LeaseWait()
        let (result, outage): (Result<T, StateError>, outage: Bool) = await withCheckedContinuation { continuation in
            let answer = OneAnswer(continuation)
            let timer = Task {
                try await Task.sleep(for: connectionWait)
                // The request stays in the pool's queue (cancelling a request there was seen to
                // leave the pool unable to stop): when a connection comes, nothing runs on it.
                if lease.abandon() {
                    answer.give((.failure(StateError(.unavailable, "PostgreSQL \(what) failed: no connection to the server within \(connectionWait.inSeconds.formatted()) s; waiting for it")), true))
                    return
                }
                try await Task.sleep(for: callDeadline - connectionWait)
                if let connection = lease.overrun() { try? await connection.close() }
            }
            Task {
                let outcome: (Result<T, StateError>, outage: Bool)
                do {
                    outcome = (.success(try await client.withConnection { connection in
                        guard lease.start(on: connection) else { throw CancellationError() }
                        defer { lease.finish() }
                        return try await work(connection)
                    }), false)
                } catch {
                    outcome = lease.outcome == .overran
                        ? (.failure(StateError(.unavailable, "PostgreSQL \(what) failed: no answer from the server within \(callDeadline.inSeconds.formatted()) s; the connection was closed (nothing of it committed) and the call is retried")), true)
                        : (.failure(Self.stateError(error, doing: what)), Self.isOutage(error))
                }
                timer.cancel()
                answer.give(outcome)
            }
        }
        if outage { outages.yield() }
        return try result.get()
    }

    /// The first of two answers to a call, given once.
    private final class OneAnswer<T: Sendable>: Sendable {
        private let continuation: Mutex<CheckedContinuation<T, Never>?>

        init(_ continuation: CheckedContinuation<T, Never>) {
            self.continuation = Mutex(continuation)
        }

        func give(_ value: T) {
            continuation.withLock { continuation in
                defer { continuation = nil }
                return continuation
            }?.resume(returning: value)
        }
    }

    /// A call's wait for a connection and its work on it: it starts, or is abandoned first
    /// (never both); once started, it finishes, or overruns its deadline first.
    private final class LeaseWait: Sendable {
        enum Phase: Equatable { case waiting, started, abandoned, finished, overran }
        private let state = Mutex<(phase: Phase, connection: PostgresConnection?)>((.waiting, nil))

        /// The connection came: true if the work may start (it was not abandoned).
        func start(on connection: PostgresConnection) -> Bool {
            state.withLock { state in
                guard state.phase == .waiting else { return false }
                state = (.started, connection)
                return true
            }
        }

        /// The wait is over: true if no work started (the request is withdrawn).
        func abandon() -> Bool {
            state.withLock { state in
                guard state.phase == .waiting else { return false }
                state.phase = .abandoned
                return true
            }
        }

        func finish() {
            state.withLock { state in
                if state.phase == .started { state = (.finished, nil) }
            }
        }

        /// The deadline passed: the connection to close if the work still runs.
        func overrun() -> PostgresConnection? {
            state.withLock { state in
                guard state.phase == .started, let connection = state.connection else { return nil }
                state = (.overran, nil)
                return connection
            }
        }

        var outcome: Phase { state.withLock { $0.phase } }
    }

    /// Runs `body` on one connection without waiting for the schema (migrations).
    func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await client.withConnection { connection in try await body(connection) }
    }

    /// Whether `error` is the connection's (broken, or none to be had), not a statement's.
    static func isOutage(_ error: any Error) -> Bool {
        if let error = error as? PostgresTransactionError, let inner = error.closureError ?? error.commitError ?? error.beginError {
            return isOutage(inner)
        }
        if error is ConnectionPoolError { return true }
        guard let error = error as? PSQLError else { return false }
        return error.code != .server
    }

    /// What a failure of PostgreSQL means for the pipeline, in words that hold no value of a row.
    static func stateError(_ error: any Error, doing what: String) -> StateError {
        if let error = error as? StateError { return error }
        if let error = error as? PostgresTransactionError, let inner = error.closureError ?? error.commitError ?? error.beginError {
            return stateError(inner, doing: what)
        }
        if let error = error as? ConnectionPoolError {
            return StateError(.unavailable, "PostgreSQL \(what) failed: the server cannot be reached (\(error == .connectionCreationCircuitBreakerTripped ? "no connection for 60 s" : "\(error)")); waiting for it")
        }
        if error is CancellationError { return StateError(.unavailable, "PostgreSQL \(what) was cancelled") }
        guard let error = error as? PSQLError else { return StateError(.unavailable, "PostgreSQL \(what) failed: \(type(of: error))") }
        guard error.code == .server, let state = error.serverInfo?[.sqlState] else {
            return StateError(.unavailable, "PostgreSQL \(what) failed: \(error.code) (the connection broke or cannot be made); retried")
        }
        let message = error.serverInfo?[.message] ?? "-"
        let kind: StateError.Kind = switch state {
        case "53100": .full  // disk_full
        case "53200", "53300", "53400": .unavailable  // out of memory, too many connections, configuration limit
        case _ where state.hasPrefix("23"), "40001", "40P01": .conflict  // integrity, serialization, deadlock
        case "XX001", "XX002": .corrupt  // data_corrupted, index_corrupted
        case "28000", "28P01", "3D000", "42501": .incompatible  // no such role or password, no such database, no right
        case _ where state.hasPrefix("42"): .incompatible  // the schema is not what this version expects
        default: .unavailable  // 57014 statement timeout, 55P03 lock timeout, 57P01 shutdown, 08 connection...
        }
        return StateError(kind, "PostgreSQL \(what) failed: \(message) (SQLSTATE \(state))")
    }
}

/// Whether the state's calls may go ahead: they wait for the first check of the server;
/// then go ahead (open), or fail at once with why (unavailable, for as long as it lasts; or a
/// failure for good). A waiting task that is cancelled stops waiting.
private final class Gate: Sendable {
    private enum Phase {
        case starting
        case unavailable(StateError)
        case open
        case failed(StateError)
    }

    private struct State {
        var phase = Phase.starting
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
    }
    private let state = Mutex(State())

    func open() { settle(.open) }
    func fail(_ error: StateError) { settle(.failed(error)) }
    func unavailable(_ error: StateError) { settle(.unavailable(error)) }

    /// Lets the waiters go with `error`, unless the gate has opened or failed already.
    func stopIfStarting(_ error: StateError) {
        let starting = state.withLock { state in
            if case .starting = state.phase { return true }
            return false
        }
        if starting { settle(.unavailable(error)) }
    }

    private func settle(_ phase: Phase) {
        let waiters = state.withLock { state in
            state.phase = phase
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async throws(StateError) {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    guard case .starting = state.phase, !Task.isCancelled else { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
        switch state.withLock({ $0.phase }) {
        case .open: return
        case .unavailable(let error), .failed(let error): throw error
        case .starting: throw StateError(.unavailable, "stopped while waiting for PostgreSQL")
        }
    }
}

extension PostgresConnection {
    /// The one array a statement answers (`SELECT array_agg(...)`; empty for NULL): one row
    /// instead of a row per value, each of which postgres-nio's state machine handles on its
    /// own (a page's dedup keys and outbox ids came back as 2,000 rows).
    func array<Element: PostgresArrayDecodable & Sendable>(of _: Element.Type, _ query: PostgresQuery, logger: Logger) async throws -> [Element]
    where Element._DecodableType == Element {
        var values: [Element] = []
        for try await array in try await self.query(query, logger: logger).decode([Element]?.self) {
            values += array ?? []
        }
        return values
    }

    /// Runs a statement whose rows are not wanted, to its end: an error the server sends after
    /// the row description (a lock timeout, a constraint) is thrown here, not left in rows
    /// nobody reads, where the transaction would go on aborted and its COMMIT end quietly as
    /// a rollback.
    func run(_ query: PostgresQuery, logger: Logger) async throws {
        for try await _ in try await self.query(query, logger: logger) {}
    }
}
