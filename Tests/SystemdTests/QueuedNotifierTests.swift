import Dispatch
import Synchronization
import Testing

@testable import Systemd

/// A manager that does not read its notify socket holds the sender, never its callers.
@Suite("Queued notifier")
struct QueuedNotifierTests {
    /// A notifier whose first send waits until released, as `sd_notify` does on a full queue.
    final class StuckManager: Notifier {
        let release = DispatchSemaphore(value: 0)
        let received = Mutex<[[NotifyMessage]]>([])
        let (sent, continuation) = AsyncStream.makeStream(of: [NotifyMessage].self)
        let (entered, enter) = AsyncStream.makeStream(of: Void.self)

        func send(_ messages: [NotifyMessage]) -> Bool {
            if received.withLock({ $0.isEmpty }) {
                enter.yield()
                release.wait()
            }
            received.withLock { $0.append(messages) }
            continuation.yield(messages)
            return true
        }
    }

    @Test func callersNeverWaitAndWhatWaitsStaysSmallAndInOrder() async {
        let manager = StuckManager()
        let notifier = QueuedNotifier(manager)
        notifier.send(.status("first"))  // taken by the sender, which then waits
        var entered = manager.entered.makeAsyncIterator()
        await entered.next()
        // Everything below returns at once although the manager reads nothing.
        notifier.send(.ready)
        for index in 0..<1000 {
            notifier.send(.status("line \(index)"))
            notifier.send(.watchdog)
        }
        notifier.send(.stopping)
        notifier.send(.status("last"))
        #expect(notifier.waiting == [[.ready], [.watchdog], [.stopping], [.status("last")]])

        manager.release.signal()
        var iterator = manager.sent.makeAsyncIterator()
        var delivered: [[NotifyMessage]] = []
        while let batch = await iterator.next() {
            delivered.append(batch)
            if batch == [.status("last")] { break }
        }
        #expect(delivered == [[.status("first")], [.ready], [.watchdog], [.stopping], [.status("last")]])
        #expect(notifier.waiting.isEmpty)
    }

    @Test func whatWaitsIsBoundedWhateverIsSent() async {
        let manager = StuckManager()
        let notifier = QueuedNotifier(manager)
        notifier.send(.stopping)
        var entered = manager.entered.makeAsyncIterator()
        await entered.next()
        for _ in 0..<1000 { notifier.send(.reloading(monotonicMicroseconds: 1), .ready) }
        #expect(notifier.waiting.count == QueuedNotifier.limit)
        manager.release.signal()
    }
}
