import DefenderAPI
import Foundation
import Logging
import PostgresNIO
import Testing

@testable import AlertForwarder

/// The PostgreSQL server `scripts/with-postgres.sh` started for the tests (`make test` runs
/// them under it), and a database of its own for each test.
enum TestPostgres {
    static var url: String? { ProcessInfo.processInfo.environment["DEFENDER_TEST_POSTGRES_URL"] }
    static var isAvailable: Bool { url != nil }
    static let reason: Comment = "no PostgreSQL server: run the tests through `make test` (scripts/with-postgres.sh)"

    static var password: Secret? {
        ProcessInfo.processInfo.environment["DEFENDER_TEST_POSTGRES_PASSWORD_FILE"]
            .flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }
            .map { Secret($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// The settings of the test server's database `database`.
    static func settings(database: String, leaseTTL: Duration = .seconds(30)) throws -> StateDatabaseSettings {
        guard let url else { throw StateError(.unavailable, "no DEFENDER_TEST_POSTGRES_URL") }
        let parts = try StateDatabaseSettings.parse(url).get()
        return StateDatabaseSettings(
            host: parts.host, port: parts.port, user: parts.user, database: database, tls: .disable, caFile: nil,
            password: password, leaseTTL: leaseTTL)
    }

    /// Runs `body` with a state in a new, empty database, dropped afterwards.
    static func withState<T: Sendable>(_ body: @escaping @Sendable (StateStore, StateDatabase) async throws -> T) async throws -> T {
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
        try await administer("CREATE DATABASE \(name)")
        // A call waits up to 30 s for a connection (the daemon's 5 s ran out for a lease
        // round of a loaded fresh-clone make test, with the host stalled); the tests of what
        // an outage does make databases of their own, with short waits.
        let database = try StateDatabase(settings: settings(database: String(name)), connectionWait: .seconds(30), logger: Logger(label: "test"))
        let result: Result<T, any Error>
        do {
            result = .success(try await run(database) { try await body(StateStore.postgres(database), database) })
        } catch {
            result = .failure(error)
        }
        try await administer("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        return try result.get()
    }

    /// Runs one statement in the test server's own database (a client runs only once: one each).
    static func administer(_ sql: String) async throws {
        let admin = try StateDatabase(settings: settings(database: defaultDatabase), logger: Logger(label: "test-admin"))
        // After the schema is migrated (the gate): a client stopped in the middle of its
        // migration was seen never to finish stopping.
        _ = try await run(admin) { try await admin.query("test administration", PostgresQuery(unsafeSQL: sql)).count }
    }

    /// The database the test server's URL names.
    static var defaultDatabase: String {
        (url.flatMap { try? StateDatabaseSettings.parse($0).get().database }) ?? "alertd_test"
    }

    /// Runs `body` while `database` runs (its pool, its migrations).
    static func run<T: Sendable>(_ database: StateDatabase, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await database.whileRunning(body)
    }
}
