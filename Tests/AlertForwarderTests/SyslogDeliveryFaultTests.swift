import DefenderAPI
import Foundation
import Synchronization
import Telemetry
import TestSupport
import Testing

@testable import AlertForwarder

/// The syslog sink and its worker against receivers that misbehave on purpose (loopback fakes
/// written with plain sockets): a RELP receiver that refuses one message or drops the session
/// mid-batch, a TCP receiver that resets connections. Nothing confirmed is lost, nothing the
/// receiver acknowledged is sent again, and nothing stalls.
@Suite("Syslog delivery faults")
struct SyslogDeliveryFaultTests {
    let directory = TemporaryDirectory()

    /// The alert ids a receiver got, in order, repeats included.
    final class Received: Sendable {
        private let ids = Mutex<[String]>([])
        func append(_ message: String) {
            let id = message.firstMatch(of: /alertId="([^"]+)"/).map { String($0.1) } ?? "?"
            ids.withLock { $0.append(id) }
        }
        var all: [String] { ids.withLock { $0 } }
        func count(of id: String) -> Int { all.filter { $0 == id }.count }
    }

    static func ids(_ range: ClosedRange<Int>, poison: Int? = nil) -> [String] {
        range.map { $0 == poison ? "poison-\($0)" : "a\($0)" }
    }

    func store(queueing ids: [String]) async throws -> StateStore {
        let store = try StateStore.embedded(directory: directory.file("state"))
        let alerts = try ids.map { try makeAlert($0, "2025-03-14T10:00:00Z") }
        _ = try await store.admission.admit(tenant: "t", alerts: alerts, forward: .new, sinks: ["siem"])
        return store
    }

    static func sink(_ transport: SyslogAddress.Transport, port: Int, settle: Duration = .milliseconds(100)) -> SyslogSink {
        var settings = SyslogSettings(
            address: SyslogAddress(transport: transport, host: "127.0.0.1", port: port),
            message: SyslogMessage(hostname: "collector-1"), timeout: .seconds(10))
        settings.settle = settle
        return SyslogSink(settings: settings)
    }

    /// Drains until the outbox is empty (each failed attempt retried at once, as the worker
    /// does after its back-off); the number of failed attempts.
    func drainToTheEnd(_ worker: SinkWorker, store: StateStore, attempts: Int = 40) async throws -> Int {
        var failures = 0
        for _ in 0..<attempts {
            do {
                try await worker.drain()
                if try await store.outbox.depth().isEmpty { return failures }
            } catch is SinkError {
                failures += 1
            }
        }
        let depth = try await store.outbox.depth()
        Issue.record("the outbox did not empty in \(attempts) attempts: \(depth)")
        return failures
    }

    /// A RELP receiver: answers `open`, `close`, and each `syslog` as `answer` says (nil: drop
    /// the session without answering).
    static func relpReceiver(
        _ received: Received, answer: @escaping @Sendable (_ message: String, _ inSession: Int) -> String?
    ) async throws -> LoopbackStreamServer {
        try LoopbackStreamServer { connection in
            var inSession = 0
            while let frame = connection.nextRELPFrame() {
                switch frame.command {
                case "open": connection.replyRELP(frame.transaction, "200 OK\nrelp_version=0\nrelp_software=fake\ncommands=syslog")
                case "close":
                    connection.replyRELP(frame.transaction, "200 OK")
                    return
                case "syslog":
                    let message = String(decoding: frame.data, as: UTF8.self)
                    inSession += 1
                    guard let status = answer(message, inSession) else { return }
                    received.append(message)
                    connection.replyRELP(frame.transaction, status)
                default:
                    connection.replyRELP(frame.transaction, "500 unknown command")
                }
            }
        }
    }

    @Test func relpDeadLettersTheOneMessageRefusedAndConfirmsEveryOtherOnce() async throws {
        let received = Received()
        let server = try await Self.relpReceiver(received) { message, _ in message.contains("poison") ? "500 error: cannot parse message" : "200 OK" }
        defer { server.stop() }
        let ids = Self.ids(1...600, poison: 300)
        let store = try await store(queueing: ids)
        let sink = Self.sink(.relp, port: server.port)
        let telemetry = Telemetry()
        let worker = SinkWorker(
            name: "siem", sink: sink, store: store, metrics: SinkMetrics(telemetry: telemetry, sink: "siem"), logger: LogRecords().logger())
        #expect(try await drainToTheEnd(worker, store: store) == 0)
        await sink.shutdown()
        // Every other alert arrived exactly once; the refused one is a dead letter with the answer.
        for id in ids where id != "poison-300" { #expect(received.count(of: id) == 1, "\(id)") }
        let letters = try await store.deadLetters.all()
        #expect(letters.map(\.alertID) == ["poison-300"])
        #expect(letters.first?.reason.contains("500 error: cannot parse message") == true)
        let metrics = telemetry.exposition(.prometheus)
        #expect(metrics.contains(#"defender_alertd_alerts_delivered_total{sink="siem"} 599"#), "\(metrics)")
        #expect(metrics.contains(#"defender_alertd_alerts_dead_lettered_total{sink="siem"} 1"#))
    }

    @Test func relpNeverSendsAgainWhatWasAcknowledgedBeforeTheSessionDropped() async throws {
        let received = Received()
        let sessions = Mutex(0)
        // The first session acknowledges 150 messages, then drops; later ones take everything.
        let server = try await Self.relpReceiver(received) { _, inSession in
            if inSession == 1 { sessions.withLock { $0 += 1 } }
            return sessions.withLock { $0 } == 1 && inSession > 150 ? nil : "200 OK"
        }
        defer { server.stop() }
        let ids = Self.ids(1...600)
        let store = try await store(queueing: ids)
        let sink = Self.sink(.relp, port: server.port)
        let telemetry = Telemetry()
        let records = LogRecords()
        let worker = SinkWorker(
            name: "siem", sink: sink, store: store, metrics: SinkMetrics(telemetry: telemetry, sink: "siem"), logger: records.logger())
        #expect(try await drainToTheEnd(worker, store: store) == 1)
        await sink.shutdown()
        for id in ids.prefix(150) { #expect(received.count(of: id) == 1, "\(id) sent again") }
        for id in ids { #expect(received.count(of: id) >= 1, "\(id) never arrived") }
        #expect(telemetry.exposition(.prometheus).contains(#"defender_alertd_connection_losses_total{sink="siem"} 1"#))
        #expect(records.at(.notice).contains { $0.message.contains("confirmed the first alerts") && $0.metadata["confirmed"] == "150" })
    }

    @Test func aRELPReceiverThatRefusesEveryMessageRefusesEachOne() async throws {
        // Each message answered 500: each a refusal of its own (the worker holds a batch
        // refused whole for a person: DeadLetterTests), and the session goes on.
        let received = Received()
        let server = try await Self.relpReceiver(received) { _, _ in "500 queue full" }
        defer { server.stop() }
        let sink = Self.sink(.relp, port: server.port)
        let records = (1...3).map {
            OutboxRecord(
                id: Int64($0), sink: "siem", tenant: "t", alertID: "a\($0)", event: "created",
                receivedAt: "2026-11-25T19:52:03Z", payload: #"{"id":"a\#($0)"}"#)
        }
        let rejected = try await sink.send(records)
        #expect(rejected.map(\.recordID) == [1, 2, 3])
        #expect(rejected.allSatisfy { $0.reason.contains("500 queue full") })
        await sink.shutdown()
    }

    /// A syslog receiver over TCP that resets the connection as soon as it has read
    /// `resetEvery` messages on it (what it had read counts as received).
    static func resettingReceiver(_ received: Received, resetEvery: Int) async throws -> LoopbackStreamServer {
        try LoopbackStreamServer { connection in
            var count = 0
            while let message = connection.nextOctetCountedMessage() {
                received.append(message)
                count += 1
                if count == resetEvery {
                    connection.reset()
                    return
                }
            }
        }
    }

    @Test func plainTCPLosesNothingConfirmedToAReceiverThatResetsEveryFewMessages() async throws {
        let received = Received()
        let server = try await Self.resettingReceiver(received, resetEvery: 4)
        defer { server.stop() }
        let ids = Self.ids(1...12)
        let store = try await store(queueing: ids)
        // A reset is seen within a few milliseconds on loopback; the settle time is generous so
        // that a busy machine (the whole suite on 2 cores, 500 ms were seen to be too short)
        // does not turn a late reset into a false loss.
        let sink = Self.sink(.tcp, port: server.port, settle: .seconds(2))
        let telemetry = Telemetry()
        let records = LogRecords()
        let worker = SinkWorker(
            name: "siem", sink: sink, store: store, metrics: SinkMetrics(telemetry: telemetry, sink: "siem"), logger: records.logger())
        let failures = try await drainToTheEnd(worker, store: store)
        await sink.shutdown()
        // Every alert the worker confirmed had been read by the receiver.
        let missing = ids.filter { received.count(of: $0) == 0 }
        #expect(missing.isEmpty, "confirmed but never read: \(missing)")
        #expect(failures > 0)
        let losses = telemetry.exposition(.prometheus).firstMatch(of: /defender_alertd_connection_losses_total\{sink="siem"\} (\d+)/).flatMap {
            Int($0.1)
        }
        #expect(losses == failures)
    }

    @Test func aResetFoundBeforeTheNextBatchIsReportedAndTheBatchGoesOnANewConnection() async throws {
        let received = Received()
        let connections = Mutex(0)
        let release = DispatchSemaphore(value: 0)
        let didReset = Mutex(false)
        // The first connection is reset once the test says so, after its batch was confirmed.
        let server = try LoopbackStreamServer { connection in
            let number = connections.withLock {
                $0 += 1; return $0
            }
            while let message = connection.nextOctetCountedMessage() {
                received.append(message)
                if number == 1 {
                    release.wait()
                    connection.reset()
                    didReset.withLock { $0 = true }
                    return
                }
            }
        }
        defer { server.stop() }
        // Generous for a loaded machine, as above.
        let sink = Self.sink(.tcp, port: server.port, settle: .seconds(1))
        func record(_ id: Int) -> OutboxRecord {
            OutboxRecord(
                id: Int64(id), sink: "siem", tenant: "t", alertID: "a\(id)", event: "created", receivedAt: "2026-11-25T19:52:03Z",
                payload: #"{"id":"a\#(id)"}"#)
        }
        #expect(try await sink.send([record(1)]).isEmpty)
        release.signal()
        // The reset is done (bounded wait for the server's thread).
        for _ in 0..<500 where !didReset.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        try #require(didReset.withLock { $0 } && received.all == ["a1"])
        // Whether the event loop saw the reset before the next write or the write met it, the
        // batch is not confirmed and the loss is reported.
        await #expect {
            try await sink.send([record(2)])
        } throws: { error in
            let error = error as? SinkError
            return error?.connectionLost == true && error?.confirmedPrefix == 0
        }
        #expect(try await sink.send([record(2)]).isEmpty)
        await sink.shutdown()
        for _ in 0..<500 where received.count(of: "a2") == 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(received.count(of: "a2") == 1)
    }
}
