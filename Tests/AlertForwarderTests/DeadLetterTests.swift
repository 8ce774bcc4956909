import DefenderAPI
import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import AlertForwarder

/// A sink that refuses every alert whose id starts with "poison" for good, and fails whole
/// batches as scripted.
private final class ScriptedSink: AlertSink {
    private let failures: Mutex<[SinkError]>
    let received = Mutex<[String]>([])

    init(failures: [SinkError] = []) {
        self.failures = Mutex(failures)
    }

    func send(_ records: [OutboxRecord]) async throws(SinkError) -> [SinkRejection] {
        if let failure = failures.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) { throw failure }
        var rejected: [SinkRejection] = []
        for record in records {
            if record.alertID.hasPrefix("poison") {
                rejected.append(SinkRejection(recordID: record.id, reason: "mapper_parsing_exception: failed to parse field [title]"))
            } else {
                received.withLock { $0.append(record.alertID) }
            }
        }
        return rejected
    }
}

/// A sink that takes everything, keeping each batch's alert ids.
private final class AcceptingSink: AlertSink {
    let batches = Mutex<[[String]]>([])

    func send(_ records: [OutboxRecord]) async throws(SinkError) -> [SinkRejection] {
        batches.withLock { $0.append(records.map(\.alertID)) }
        return []
    }
}

@Suite("Dead letters and typed sink errors")
struct DeadLetterTests {
    let directory = TemporaryDirectory()

    private func queue(_ ids: [String], in store: StateStore) async throws {
        let alerts = try ids.map { try makeAlert($0, "2025-03-14T10:00:00Z") }
        _ = try await store.admission.admit(tenant: "t", alerts: alerts, forward: .new, sinks: ["siem"])
    }

    @Test func aPoisonRecordIsDeadLetteredAndTheRestDelivered() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        try await queue(["a", "poison-1", "b"], in: store)
        let sink = ScriptedSink()
        let records = LogRecords()
        let status = PipelineStatus(clock: .continuous)
        let worker = SinkWorker(name: "siem", sink: sink, store: store, status: status, logger: records.logger())
        #expect(try await worker.drain() == 2)
        #expect(sink.received.withLock { $0 } == ["a", "b"])
        #expect(try await store.outbox.depth() == [:])
        let letters = try await store.deadLetters.all()
        #expect(letters.map(\.alertID) == ["poison-1"])
        #expect(letters[0].sink == "siem" && letters[0].tenant == "t" && letters[0].reason.contains("mapper_parsing_exception"))
        #expect(records.at(.error).contains { $0.message.contains("dead letter") && $0.metadata["alert_id"] == "poison-1" })
        #expect(status.line.contains("sink siem 1 dead letters"))
    }

    /// A receiver that refuses everything once wrote a line per alert (10,000 alerts, 18,500
    /// lines): one line per batch, naming the first ten alerts and the count (issue 23, item 13).
    @Test func aBatchOfRefusedAlertsIsOneLogLine() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        // One alert in a hundred is taken (a batch refused whole is held instead: below).
        try await queue((1...1200).map { $0 % 100 == 0 ? "good-\($0)" : "poison-\($0)" }, in: store)
        let records = LogRecords()
        let worker = SinkWorker(name: "siem", sink: ScriptedSink(), store: store, batchSize: 500, logger: records.logger())
        #expect(try await worker.drain() == 12)
        #expect(try await store.deadLetters.all().count == 1188)
        let lines = records.at(.error).filter { $0.message.contains("dead letter") }
        #expect(lines.count == 3, "\(lines.count) lines for 3 batches")
        #expect(lines.map { $0.metadata["dead_letters"] } == ["495", "495", "198"])
        for line in lines {
            let ids = line.metadata["alert_ids"]?.description.split(separator: ",") ?? []
            #expect(ids.count == 11 && ids.last?.hasPrefix("… (") == true, "\(ids)")
            #expect(line.metadata["reason"] == "mapper_parsing_exception: failed to parse field [title]")
        }
    }

    /// A receiver that refuses every alert refuses the sender, not the alerts (issue 23, items
    /// 4 and 9): a batch refused whole, and a batch of one right after it, wait for a person;
    /// a poison among good alerts is still a dead letter. One rule in the worker for every sink.
    @Test func aBatchRefusedWholeIsHeldNotDeadLettered() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        try await queue(["poison-1", "poison-2", "poison-3"], in: store)
        let worker = SinkWorker(name: "siem", sink: ScriptedSink(), store: store, logger: LogRecords().logger())
        await #expect { try await worker.drain() } throws: { ($0 as? SinkError)?.kind == .needsOperator && "\($0)".contains("refused every alert") }
        #expect(try await store.deadLetters.all().isEmpty)
        #expect(try await store.outbox.depth() == ["siem": 3])
    }

    @Test func aBatchOfOneRightAfterABatchRefusedWholeIsHeldAndAnAcceptedAlertEndsTheRun() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        let worker = SinkWorker(name: "siem", sink: ScriptedSink(), store: store, batchSize: 1, logger: LogRecords().logger())
        // Alone, a refused alert cannot tell: a dead letter.
        try await queue(["poison-1"], in: store)
        #expect(try await worker.drain() == 0)
        #expect(try await store.deadLetters.all().map(\.alertID) == ["poison-1"])
        // Right after it, the next refused alone is held.
        try await queue(["poison-2"], in: store)
        await #expect { try await worker.drain() } throws: { ($0 as? SinkError)?.kind == .needsOperator }
        #expect(try await store.outbox.depth() == ["siem": 1])
        // A batch taken ends the run (what was held goes once the receiver takes alerts: here
        // the scripted sink still refuses poison, so it becomes a dead letter after a good one).
        let mixed = try StateStore.embedded(directory: directory.file("mixed"))
        let other = SinkWorker(name: "siem", sink: ScriptedSink(), store: mixed, batchSize: 1, logger: LogRecords().logger())
        try await queue(["poison-a", "good", "poison-b"], in: mixed)
        #expect(try await other.drain() == 1)
        #expect(try await mixed.deadLetters.all().map(\.alertID) == ["poison-a", "poison-b"])
    }

    @Test func requeueSendsDeadLettersAgainAndPurgeDropsThem() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        try await queue(["poison-1", "poison-2", "c"], in: store)
        let worker = SinkWorker(name: "siem", sink: ScriptedSink(), store: store, logger: LogRecords().logger())
        try await worker.drain()
        #expect(try await store.deadLetters.counts() == ["siem": 2])
        // Another process (the CLI) only marks them; the daemon's worker sends them.
        let other = try StateStore.embedded(directory: directory.file("state"), access: .inspector)
        #expect(try await other.deadLetters.markForRequeue(sink: "siem") == 2)
        #expect(try await store.deadLetters.all().allSatisfy(\.markedForRequeue))
        #expect(try await store.outbox.pending(sink: "elsewhere", limit: 10).records.isEmpty)
        let again = try await store.outbox.pending(sink: "siem", limit: 10)
        #expect(again.requeued)
        #expect(again.records.map(\.alertID) == ["poison-1", "poison-2"])
        #expect(again.records.allSatisfy { $0.tenant == "t" && $0.payload.contains("\"severity\":\"High\"") })
        // Refused again: dead letters again, no longer marked, with the new reason; purged on request.
        try await worker.drain()
        #expect(try await store.deadLetters.counts() == ["siem": 2])
        #expect(try await store.deadLetters.all().allSatisfy { !$0.markedForRequeue })
        #expect(try await store.outbox.pending(sink: "siem", limit: 10).records.isEmpty)
        #expect(try await other.deadLetters.purge(sink: "siem") == 2)
        #expect(try await store.deadLetters.all().isEmpty)
    }

    /// A re-queued dead letter goes ahead of the backlog (before, it was appended to the end of
    /// the outbox and, with 7,500 alerts queued, had not gone after a minute).
    @Test func aRequeuedDeadLetterGoesAheadOfTheBacklogAndIsDeletedOnceDelivered() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        try await queue(["poison-1"], in: store)
        let refusing = SinkWorker(name: "siem", sink: ScriptedSink(), store: store, logger: LogRecords().logger())
        try await refusing.drain()
        #expect(try await store.deadLetters.counts() == ["siem": 1])
        // A backlog builds up behind (the receiver is down, say), then the dead letter is re-queued.
        try await queue((0..<2000).map { "backlog-\($0)" }, in: store)
        #expect(try await store.deadLetters.markForRequeue(sink: "siem") == 1)
        // The receiver now takes what it refused: the re-queued alert is in the very first batch.
        let sink = AcceptingSink()
        let status = PipelineStatus(clock: .continuous)
        status.sink("siem", deadLetters: 1)
        let worker = SinkWorker(name: "siem", sink: sink, store: store, batchSize: 100, status: status, logger: LogRecords().logger())
        #expect(try await worker.drain() == 2001)
        let batches = sink.batches.withLock { $0 }
        #expect(batches.first == ["poison-1"])
        #expect(batches.dropFirst().flatMap { $0 } == (0..<2000).map { "backlog-\($0)" })
        // Delivered: no longer a dead letter, and not sent twice.
        #expect(try await store.deadLetters.all().isEmpty)
        #expect(try await store.outbox.depth() == [:])
        #expect(try await worker.drain() == 0)
        #expect(!status.line.contains("dead letters"), "\(status.line)")
    }

    @Test func aRequeuedBatchConfirmedTwiceIsHarmless() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        try await queue(["poison-1", "poison-2"], in: store)
        let first = try await store.outbox.pending(sink: "siem", limit: 10)
        try await store.outbox.confirm(first, rejected: first.records.map { SinkRejection(recordID: $0.id, reason: "too large") })
        try await store.deadLetters.markForRequeue(sink: nil)
        let batch = try await store.outbox.pending(sink: "siem", limit: 10)
        #expect(batch.requeued && batch.records.count == 2)
        let rejection = SinkRejection(recordID: batch.records[1].id, reason: "still too large")
        try await store.outbox.confirm(batch, rejected: [rejection])
        try await store.outbox.confirm(batch, rejected: [rejection])
        let letters = try await store.deadLetters.all()
        #expect(letters.map(\.alertID) == ["poison-2"])
        #expect(letters.first?.reason == "still too large" && letters.first?.markedForRequeue == false)
    }

    @Test func aBatchConfirmedTwiceDoesNotDeadLetterTwice() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        try await queue(["poison-1"], in: store)
        let batch = try await store.outbox.pending(sink: "siem", limit: 10)
        let rejection = SinkRejection(recordID: batch.records[0].id, reason: "too large")
        try await store.outbox.confirm(batch, rejected: [rejection])
        try await store.outbox.confirm(batch, rejected: [rejection])
        #expect(try await store.deadLetters.all().count == 1)
    }

    @Test func aWholeBatchRefusalIsRetriedAndNeverDeadLettered() async throws {
        let store = try StateStore.embedded(directory: directory.file("state"))
        try await queue(["a", "b"], in: store)
        let sink = ScriptedSink(failures: [SinkError("HTTP 401: invalid token", kind: .needsOperator)])
        let worker = SinkWorker(name: "siem", sink: sink, store: store, logger: LogRecords().logger())
        await #expect(throws: SinkError.self) { try await worker.drain() }
        #expect(try await store.outbox.depth() == ["siem": 2])
        #expect(try await store.deadLetters.all().isEmpty)
        #expect(try await worker.drain() == 2)
    }

    @Test func retryDelaysFollowTheKindOfFailure() {
        let worker = SinkWorker(
            name: "siem", sink: ScriptedSink(), store: try! StateStore.embedded(directory: directory.file("state")),
            backoff: Backoff(base: .seconds(1), cap: .seconds(300)), operatorBackoff: Backoff(base: .seconds(60), cap: .seconds(900)),
            random: { 0.999 }, logger: LogRecords().logger())
        #expect(worker.retryDelay(after: SinkError("down"), failures: 0) < .seconds(1))
        #expect(worker.retryDelay(after: SinkError("bad token", kind: .needsOperator), failures: 0) > .seconds(59))
        #expect(worker.retryDelay(after: SinkError("bad token", kind: .needsOperator), failures: 9) <= .seconds(900))
        #expect(worker.retryDelay(after: SinkError("busy", retryAfter: .seconds(42)), failures: 5) == .seconds(42))
        #expect(worker.retryDelay(after: SinkError("busy", retryAfter: .seconds(86_400)), failures: 0) == .seconds(900))
        // The state unavailable (PostgreSQL down): retried within seconds however long it lasts.
        #expect(worker.retryDelay(after: StateError(.unavailable, "down"), failures: 9) == SinkWorker.stateRetryCap)
        #expect(worker.retryDelay(after: StateError(.full, "disk full"), failures: 9) > .seconds(200))
    }

    @Test func fileSinkErrorsSayWhetherAPersonMustAct() async throws {
        let full = FileSink(path: "/dev/full", layout: RecordLine(format: .alert), maxSize: 0, maxFiles: 0)
        let record = OutboxRecord(id: 1, sink: "f", tenant: "t", alertID: "a", event: "created", receivedAt: "x", payload: "{}")
        await #expect { try await full.send([record]) } throws: { ($0 as? SinkError)?.kind == .retryable }
        let readOnly = FileSink(path: "/proc/version/alerts.jsonl", layout: RecordLine(format: .alert), maxSize: 0, maxFiles: 0)
        await #expect { try await readOnly.send([record]) } throws: { ($0 as? SinkError)?.kind == .needsOperator }
    }
}
