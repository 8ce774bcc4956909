import DefenderAPI
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import ServiceLifecycle
import Synchronization
import _ConnectionPoolModule

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
    /// The calls under way (what each does, since when, how far), for a stop that does not end
    /// to say where they are (``callsUnderWay``).
    private let calls = Mutex<(next: Int, running: [Int: (what: String, since: ContinuousClock.Instant, lease: LeaseWait)])>((0, [:]))

    /// `member`: this daemon's name in a group, shown in the server's `pg_stat_activity`; in a
    /// group, the server ends a transaction left idle for half of `lease_ttl`, 5 s at least (a
    /// daemon paused in the middle of one, SIGSTOP or a partition that drops nothing): its
    /// locks (an admission's on its lease row) must not outlast its leases by more than a
    /// round, yet a daemon slowed down by a loaded host must keep its transactions. Else 60 s.
    /// `connectionWait`: how long a call waits for a connection before it fails as unavailable;
    /// `callDeadline`: how long it may run on it.
    public init(
        settings: StateDatabaseSettings, member: String? = nil, connectionWait: Duration = .seconds(5),
        callDeadline: Duration = .seconds(45), logger: Logger
    ) throws(StateError) {
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
            configuration.certificateVerification =
                switch settings.tls {
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
        var configuration = PostgresClient.Configuration(
            host: settings.host, port: settings.port, username: settings.user,
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
            ("idle_in_transaction_session_timeout", "\(member == nil ? 60000 : Int(max(settings.leaseTTL / 2, .seconds(5)).inSeconds * 1000))"),
        ]
        client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        var check = PostgresConnection.Configuration(
            host: settings.host, port: settings.port, username: settings.user,
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
                    if reported != nil {
                        logger.notice("PostgreSQL can be reached again; the state is in use", metadata: ["database": "\(settings.url)"])
                    }
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
                        logger.error(
                            migrated
                                ? "PostgreSQL cannot be reached; admission, delivery and the group's leases wait for it"
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

    /// Nil while the server is in use; else why the state waits (not reached yet, an outage, a
    /// refusal): the daemon's readiness (`/healthz/ready`).
    public var unavailability: String? { ready.unavailability }

    /// Runs `body` while this client runs (its pool, the check and the migrations; for a
    /// command or a test, where no service group does), and ends the client once `body` has.
    public func whileRunning<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                try await self.run(); return nil
            }
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

    /// Waits for the schema, then runs `body` in one transaction, mapping its failure; within
    /// `deadline` if given (else ``callDeadline``).
    func transaction<T: Sendable>(
        _ what: String, deadline: Duration? = nil,
        _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws(StateError) -> T {
        let logger = self.logger
        return try await onConnection(what, deadline: deadline) { connection in
            try await connection.transaction(logger: logger) { try await body($0) }
        }
    }

    /// Waits for the schema, then runs one statement, its rows collected.
    func query(_ what: String, _ query: PostgresQuery) async throws(StateError) -> [PostgresRow] {
        let logger = self.logger
        return try await onConnection(what) { connection in try await connection.query(query, logger: logger).collect() }
    }

    /// Waits for the schema, then runs `work` on a connection of the pool
    /// (``bounded(_:connectionWait:deadline:_:)``, within `deadline` if given, else ``callDeadline``).
    func onConnection<T: Sendable>(
        _ what: String, deadline: Duration? = nil,
        _ work: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws(StateError) -> T {
        try await ready.wait()
        return try await bounded(what, deadline: deadline ?? callDeadline, work)
    }

    /// Runs `work` on a connection of the pool, to its end whatever happens to the caller's task
    /// (as the embedded state's ``Blocking`` does): a transaction is committed or rolled back,
    /// never abandoned between two statements, where it would keep its rows locked (a tenant's
    /// lease row among them) until the server's idle timeout; postgres-nio ends a row iteration
    /// on cancellation. An unstructured task, awaited at once: the caller's cancellation does
    /// not reach it. Three bounds end the call sooner, as unavailable, with an outage reported
    /// (the service checks the server):
    /// - the wait for a connection (the `connectionWait` given, else the database's
    ///   ``connectionWait``; ``stopGrace`` once the caller is cancelled): a request still waiting then is
    ///   abandoned (nothing runs on the connection it gets later; cancelling a request in the
    ///   pool's queue was seen to leave the pool unable to stop);
    /// - the work (`deadline`; ``stopGrace`` once the caller is cancelled, as at a stop): past
    ///   it the connection is closed, which ends the transaction without a commit;
    /// - the connection closing under the work (the server restarted, a reset): postgres-nio
    ///   never answers a statement sent on a connection closed before it (the `ROLLBACK` of its
    ///   own `withTransaction` after a failure was one; a connection the pool handed out as it
    ///   closed, another), so a call still on a closed connection a moment later is answered
    ///   here. Its task stays behind, waiting for good: a little memory, once per connection lost.
    ///
    /// The bounds are checked by a timer of an event loop, every second at most, taken off its
    /// heap when the call ends (most calls end before its first check). A sleeping task per
    /// call kept a Dispatch timer until it would have fired, ended or not: 6 % of the daemon's
    /// CPU in a backfill, when it slept until the deadline. (The hang once blamed on these
    /// timers was the closed connection above: they fired, and closing a closed connection
    /// did nothing.)
    func bounded<T: Sendable>(
        _ what: String, connectionWait: Duration? = nil, deadline: Duration,
        _ work: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws(StateError) -> T {
        let (client, connectionWait) = (self.client, connectionWait ?? self.connectionWait)
        let lease = LeaseWait()
        let timers = MultiThreadedEventLoopGroup.singleton.any()
        let call = calls.withLock { calls in
            defer { calls.next += 1 }
            calls.running[calls.next] = (what, .now, lease)
            return calls.next
        }
        defer { calls.withLock { _ = $0.running.removeValue(forKey: call) } }
        let (result, outage): (Result<T, StateError>, outage: Bool) = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let answer = OneAnswer(continuation)
                let step = TimeAmount(min(.seconds(1), connectionWait / 4))
                let bounds = timers.scheduleRepeatedTask(initialDelay: step, delay: step) { bounds in
                    let verdict = lease.check(connectionWait: connectionWait, deadline: deadline)
                    switch verdict {
                    case .wait:
                        return
                    case .done:
                        break
                    case .abandoned(let stopping):
                        let bound =
                            stopping
                            ? "within \(Self.stopGrace.inSeconds.formatted()) s of the stop" : "within \(connectionWait.inSeconds.formatted()) s"
                        answer.give(
                            (
                                .failure(StateError(.unavailable, "PostgreSQL \(what) failed: no connection to the server \(bound); waiting for it")),
                                true
                            ))
                    case .closedUnder:
                        answer.give(
                            (
                                .failure(
                                    StateError(
                                        .unavailable,
                                        "PostgreSQL \(what) failed: the connection to the server closed under it (nothing of it committed unless the server had confirmed it); retried"
                                    )), true
                            ))
                    case .overran(let connection, let stopping):
                        let bound =
                            stopping ? "within \(Self.stopGrace.inSeconds.formatted()) s of the stop" : "within \(deadline.inSeconds.formatted()) s"
                        answer.give(
                            (
                                .failure(
                                    StateError(
                                        .unavailable,
                                        "PostgreSQL \(what) failed: no answer from the server \(bound); the connection was closed (nothing of it committed) and the call is retried"
                                    )), true
                            ))
                        connection.close().whenComplete { _ in }
                    }
                    bounds.cancel()
                }
                Task {
                    let outcome: (Result<T, StateError>, outage: Bool)
                    do {
                        outcome = (
                            .success(
                                try await client.withConnection { connection in
                                    guard lease.start(on: connection) else { throw CancellationError() }
                                    defer { lease.finish() }
                                    return try await work(connection)
                                }), false
                        )
                    } catch {
                        outcome = (.failure(Self.stateError(error, doing: what)), Self.isOutage(error))
                    }
                    bounds.cancel()
                    answer.give(outcome)
                }
            }
        } onCancel: {
            lease.stopping(grace: Self.stopGrace)
        }
        if outage { outages.yield() }
        return try result.get()
    }

    /// How long a call still runs once its caller is cancelled (a stop): a stop waits no longer
    /// for a server that does not answer.
    static let stopGrace: Duration = .seconds(3)

    /// The calls under way, oldest first: what each does, how far it is and for how long
    /// (`admission: on its connection for 52 s`).
    public var callsUnderWay: [String] {
        let now = ContinuousClock.now
        return calls.withLock { $0.running.values.sorted { $0.since < $1.since } }.map { call in
            "\(call.what): \(call.lease.phase) for \((now - call.since).inSeconds.formatted(.number.precision(.fractionLength(1)))) s"
        }
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
    /// (never both); once started, it finishes, or overruns its deadline or loses its
    /// connection first.
    private final class LeaseWait: Sendable {
        private enum Phase {
            case waiting
            /// `closedSeen`: the connection was seen closed at the last check (the work gets
            /// until the next).
            case started(PostgresConnection, closedSeen: Bool)
            case abandoned, finished, overran, closedUnder
        }
        private struct State {
            var phase = Phase.waiting
            /// The caller was cancelled: the work ends by then.
            var stopBy: ContinuousClock.Instant?
        }
        private let state = Mutex(State())
        private let began = ContinuousClock.now

        /// What the bounds' check found.
        enum Verdict { case wait, done, abandoned(stopping: Bool), closedUnder, overran(PostgresConnection, stopping: Bool) }

        /// The connection came: true if the work may start (it was not abandoned).
        func start(on connection: PostgresConnection) -> Bool {
            state.withLock { state in
                guard case .waiting = state.phase else { return false }
                state.phase = .started(connection, closedSeen: false)
                return true
            }
        }

        func finish() {
            state.withLock { state in
                if case .started = state.phase { state.phase = .finished }
            }
        }

        /// The caller was cancelled: the work has `grace` more.
        func stopping(grace: Duration) {
            state.withLock { state in
                if state.stopBy == nil { state.stopBy = .now + grace }
            }
        }

        /// Whether a bound has passed (and the phase the call ends in).
        func check(connectionWait: Duration, deadline: Duration) -> Verdict {
            let now = ContinuousClock.now
            return state.withLock { state in
                switch state.phase {
                case .waiting:
                    let stopping = state.stopBy.map { now >= $0 } ?? false
                    guard stopping || now - began >= connectionWait else { return .wait }
                    state.phase = .abandoned
                    return .abandoned(stopping: stopping)
                case .started(let connection, let closedSeen):
                    let stopping = state.stopBy.map { now >= $0 } ?? false
                    if stopping || now - began >= deadline {
                        state.phase = .overran
                        return .overran(connection, stopping: stopping)
                    }
                    guard connection.isClosed else { return .wait }
                    guard closedSeen else {
                        state.phase = .started(connection, closedSeen: true)
                        return .wait
                    }
                    state.phase = .closedUnder
                    return .closedUnder
                case .abandoned, .finished, .overran, .closedUnder:
                    return .done
                }
            }
        }

        /// The phase in words (for ``callsUnderWay``).
        var phase: String {
            switch state.withLock({ $0.phase }) {
            case .waiting: "waiting for a connection"
            case .started: "on its connection"
            case .abandoned: "abandoned while waiting for a connection"
            case .finished: "finished on its connection"
            case .overran: "past its deadline, its connection closed"
            case .closedUnder: "its connection closed under it"
            }
        }
    }

    /// Whether `error` is the connection's (broken, or none to be had), not a statement's.
    static func isOutage(_ error: any Error) -> Bool {
        if error is ConnectionPoolError { return true }
        guard let error = error as? PSQLError else { return false }
        return error.code != .server
    }

    /// What a failure of PostgreSQL means for the pipeline, in words that hold no value of a row.
    static func stateError(_ error: any Error, doing what: String) -> StateError {
        if let error = error as? StateError { return error }
        if let error = error as? ConnectionPoolError {
            return StateError(
                .unavailable,
                "PostgreSQL \(what) failed: the server cannot be reached (\(error == .connectionCreationCircuitBreakerTripped ? "no connection for 60 s" : "\(error)")); waiting for it"
            )
        }
        if error is CancellationError { return StateError(.unavailable, "PostgreSQL \(what) was cancelled") }
        guard let error = error as? PSQLError else { return StateError(.unavailable, "PostgreSQL \(what) failed: \(type(of: error))") }
        guard error.code == .server, let state = error.serverInfo?[.sqlState] else {
            return StateError(.unavailable, "PostgreSQL \(what) failed: \(error.code) (the connection broke or cannot be made); retried")
        }
        let message = error.serverInfo?[.message] ?? "-"
        let kind: StateError.Kind =
            switch state {
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

    /// Nil while the state can be used; else why not.
    var unavailability: String? {
        switch state.withLock({ $0.phase }) {
        case .open: nil
        case .starting: "PostgreSQL has not been reached yet"
        case .unavailable(let error), .failed(let error): "\(error)"
        }
    }
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

    /// `BEGIN`, `body`, `COMMIT`; after a failure of `body`, `ROLLBACK`, unless the connection
    /// is closed (postgres-nio's own `withTransaction` sends it anyway, and a statement sent on
    /// a closed connection is never answered). Its failure is thrown as it is.
    func transaction<T: Sendable>(logger: Logger, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await run("BEGIN", logger: logger)
        let value: T
        do {
            value = try await body(self)
        } catch {
            if !isClosed { try? await run("ROLLBACK", logger: logger) }
            throw error
        }
        try await run("COMMIT", logger: logger)
        return value
    }

    /// Runs a statement whose rows are not wanted, to its end: an error the server sends after
    /// the row description (a lock timeout, a constraint) is thrown here, not left in rows
    /// nobody reads, where the transaction would go on aborted and its COMMIT end quietly as
    /// a rollback.
    func run(_ query: PostgresQuery, logger: Logger) async throws {
        for try await _ in try await self.query(query, logger: logger) {}
    }
}
