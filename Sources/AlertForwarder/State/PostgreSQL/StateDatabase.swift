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
    let logger: Logger
    /// Set once the schema is migrated (or failed to be).
    private let ready = Gate()

    public init(settings: StateDatabaseSettings, logger: Logger) throws(StateError) {
        self.settings = settings
        self.logger = logger
        var tls: PostgresClient.Configuration.TLS = .disable
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
            do { _ = try NIOSSLContext(configuration: configuration) } catch {
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
            ("application_name", "defender-alertd"),
            ("statement_timeout", "30000"),
            ("lock_timeout", "10000"),
            ("idle_in_transaction_session_timeout", "60000"),
        ]
        client = PostgresClient(configuration: configuration, backgroundLogger: logger)
    }

    /// Runs the pool, migrates the schema, then serves until cancelled or shut down gracefully.
    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.client.run() }
            do {
                try await PostgresSchema.migrate(self)
                ready.open(nil)
            } catch {
                ready.open(error)
                group.cancelAll()
                throw error
            }
            try await group.waitForAll()
        }
    }

    /// Waits for the schema, then runs `body` in one transaction, mapping its failure.
    func transaction<T: Sendable>(_ what: String, _ body: (PostgresConnection) async throws -> T) async throws(StateError) -> T {
        try await ready.wait()
        do {
            return try await client.withTransaction(logger: logger) { connection in try await body(connection) }
        } catch {
            throw Self.stateError(error, doing: what)
        }
    }

    /// Waits for the schema, then runs one statement, its rows collected.
    func query(_ what: String, _ query: PostgresQuery) async throws(StateError) -> [PostgresRow] {
        try await ready.wait()
        do {
            return try await client.query(query, logger: logger).collect()
        } catch {
            throw Self.stateError(error, doing: what)
        }
    }

    /// Runs `body` on one connection without waiting for the schema (migrations).
    func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await client.withConnection { connection in try await body(connection) }
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

/// Opened once, with nil or the error every waiter then gets; a waiting task that is
/// cancelled stops waiting.
private final class Gate: Sendable {
    private struct State {
        var opened = false
        var error: StateError?
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
    }
    private let state = Mutex(State())

    func open(_ error: (any Error)?) {
        let failure = error.map { StateDatabase.stateError($0, doing: "schema migration") }
        let waiters = state.withLock { state in
            state.opened = true
            state.error = failure
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
                    guard !state.opened, !Task.isCancelled else { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
        let (opened, error) = state.withLock { ($0.opened, $0.error) }
        if let error { throw error }
        if !opened { throw StateError(.unavailable, "stopped while waiting for the PostgreSQL schema") }
    }
}
