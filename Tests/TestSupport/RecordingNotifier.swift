import Synchronization
import Systemd

/// A notifier that remembers every message, for tests.
public final class RecordingNotifier: Notifier {
    private let messages = Mutex<[NotifyMessage]>([])

    public init() {}

    @discardableResult
    public func send(_ messages: [NotifyMessage]) -> Bool {
        self.messages.withLock { $0.append(contentsOf: messages) }
        return true
    }

    /// Everything sent so far.
    public var sent: [NotifyMessage] { messages.withLock { $0 } }

    /// How many `WATCHDOG=1` pings were sent.
    public var watchdogPings: Int { sent.filter { $0 == .watchdog }.count }

    /// Forgets what was sent.
    public func reset() { messages.withLock { $0.removeAll() } }
}
