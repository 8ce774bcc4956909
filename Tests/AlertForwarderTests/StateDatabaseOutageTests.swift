import Foundation
import Logging
import PostgresNIO
import TestSupport
import Testing

@testable import AlertForwarder

/// PostgreSQL lost while the state is in use, through a loopback proxy the test cuts: a call
/// fails as unavailable instead of waiting (postgres-nio's pool would let it wait a minute,
/// and a connection whose server went silent forever); the outage is logged once, later calls
/// fail at once, and the state is in use again by itself once the server answers.
@Suite("State database outages", .serialized, .enabled(if: TestPostgres.isAvailable, TestPostgres.reason))
struct StateDatabaseOutageTests {
    /// Waits (bounded) until a call succeeds; false if none did.
    static func answersAgain(_ database: StateDatabase) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(90)
        while ContinuousClock.now < deadline {
            if (try? await database.query("test", "SELECT 1")) != nil { return true }
            try? await Task.sleep(for: .milliseconds(200))  // waiting for the service's check, not a timing assumption
        }
        return false
    }

    @Test func anOutageFailsCallsAsUnavailableIsLoggedOnceAndEndsByItself() async throws {
        let name = "o_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
        try await TestPostgres.administer("CREATE DATABASE \(name)")
        var settings = try TestPostgres.settings(database: String(name))
        let proxy = try PartitionProxy(target: settings.port)
        defer { proxy.stop() }
        settings.port = proxy.port
        let records = LogRecords()
        let database = try StateDatabase(settings: settings, connectionWait: .seconds(1), callDeadline: .seconds(3), logger: records.logger())
        try await TestPostgres.run(database) {
            // The first connection, on a loaded machine, may take longer than the 1 s a call
            // waits for one (a fresh-clone make test saw it): waited for, not assumed.
            #expect(await Self.answersAgain(database))

            // Cut: every connection reset, new ones too.
            proxy.cut()
            let cut = await #expect(throws: StateError.self) { _ = try await database.query("test", "SELECT 1") }
            #expect(cut?.kind == .unavailable)
            // The service checks, finds the server unreachable, and says so once; calls then
            // fail at once with why.
            let deadline = ContinuousClock.now + .seconds(60)
            while !records.fullText.contains("PostgreSQL cannot be reached"), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))  // waiting for the service's check, not a timing assumption
            }
            #expect(records.at(.error).filter { $0.message.contains("PostgreSQL cannot be reached") }.count == 1, "\(records.fullText)")
            // Not ready (`/healthz/ready`), with why.
            #expect(database.unavailability?.hasPrefix("PostgreSQL connection failed") == true, "\(database.unavailability ?? "nil")")
            let refused = await #expect(throws: StateError.self) { _ = try await database.query("test", "SELECT 1") }
            #expect(refused?.kind == .unavailable)
            // The check's own failure: the call did not wait for a connection.
            #expect(refused?.description.hasPrefix("PostgreSQL connection failed") == true, "\(refused?.description ?? "")")
            proxy.restore()
            #expect(await Self.answersAgain(database))
            #expect(records.fullText.contains("PostgreSQL can be reached again"))
            #expect(database.unavailability == nil)

            // Blackhole: the connections stay open and nothing comes back. The call's
            // connection is closed at its deadline instead of holding the call forever.
            // While it hangs, a stop that does not end can say where it is.
            proxy.blackhole()
            let hanging = Task { try await database.query("silent", "SELECT pg_sleep(0)") }
            let shown = ContinuousClock.now + .seconds(60)
            while database.callsUnderWay.isEmpty, ContinuousClock.now < shown {
                try await Task.sleep(for: .milliseconds(20))  // waiting for the call to begin, not a timing assumption
            }
            let underWay = database.callsUnderWay
            #expect(underWay.count == 1 && underWay.allSatisfy { $0.hasPrefix("silent: ") && $0.hasSuffix(" s") }, "\(underWay)")
            let silent = await #expect(throws: StateError.self) { _ = try await hanging.value }
            #expect(database.callsUnderWay.isEmpty)
            #expect(silent?.kind == .unavailable)
            #expect(
                silent?.description.contains("no answer from the server") == true || silent?.description.contains("no connection") == true,
                "\(silent?.description ?? "")")
            proxy.restore()
            #expect(await Self.answersAgain(database))
        }
        try await TestPostgres.administer("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    private struct BodyFailed: Error {}

    /// A connection that closes under a call (a server restarted, a reset): postgres-nio never
    /// answers a statement sent on it afterwards, a `ROLLBACK` after a failure among them. The
    /// call ends as unavailable at once, long before its deadline (60 s here), and the next
    /// call works on another connection.
    @Test func aConnectionClosedUnderACallEndsItWithoutWaitingForItsDeadline() async throws {
        let database = try StateDatabase(
            settings: try TestPostgres.settings(database: TestPostgres.defaultDatabase),
            connectionWait: .seconds(5), callDeadline: .seconds(60), logger: Logger(label: "test"))
        try await TestPostgres.run(database) {
            // A statement after the close.
            let closed = await #expect(throws: StateError.self) {
                _ = try await database.onConnection("closed under") { connection in
                    try await connection.close()
                    return try await connection.query("SELECT 1", logger: Logger(label: "test")).collect().count
                }
            }
            #expect(closed?.kind == .unavailable)
            #expect(closed?.description.contains("no answer from the server") == false, "\(closed?.description ?? "")")
            // A transaction whose body failed after its connection closed: no ROLLBACK is sent,
            // the body's own failure comes back.
            let failed = await #expect(throws: StateError.self) {
                try await database.transaction("closed in a transaction") { connection in
                    try await connection.close()
                    throw BodyFailed()
                }
            }
            #expect(failed?.description.contains("BodyFailed") == true, "\(failed?.description ?? "")")
            #expect(database.callsUnderWay.isEmpty)
            let again = try await database.query("test", "SELECT 1")
            #expect(again.count == 1)
        }
    }

    /// A stop (the caller cancelled) waits no longer than ``StateDatabase/stopGrace`` for a
    /// server that stopped answering, not the call's whole deadline (60 s here).
    @Test func aCancelledCallEndsWithinTheStopGrace() async throws {
        var settings = try TestPostgres.settings(database: TestPostgres.defaultDatabase)
        let proxy = try PartitionProxy(target: settings.port)
        defer { proxy.stop() }
        settings.port = proxy.port
        let database = try StateDatabase(settings: settings, connectionWait: .seconds(5), callDeadline: .seconds(60), logger: Logger(label: "test"))
        try await TestPostgres.run(database) {
            #expect(try await database.query("test", "SELECT 1").count == 1)
            proxy.blackhole()
            defer { proxy.restore() }
            let call = Task { try await database.query("silent", "SELECT 1") }
            let shown = ContinuousClock.now + .seconds(60)
            while !database.callsUnderWay.contains(where: { $0.hasPrefix("silent: on its connection") }), ContinuousClock.now < shown {
                try await Task.sleep(for: .milliseconds(20))  // waiting for the call to begin, not a timing assumption
            }
            call.cancel()
            let stopped = await #expect(throws: StateError.self) { _ = try await call.value }
            #expect(stopped?.description.contains("of the stop") == true, "\(stopped?.description ?? "")")
        }
    }
}
