import Synchronization

/// The one-line `STATUS=` shown by `systemctl status`, assembled from named parts.
///
/// Each area of the daemon owns a part (for example `health` or one per tenant) and updates
/// only its own; the line is the parts joined with `; ` in the order they were first set, and
/// it is sent to the service manager only when it changes.
public final class StatusLine: Sendable {
    private struct State {
        var order: [String] = []
        var parts: [String: String] = [:]
        var lastSent: String?
    }

    private let notifier: any Notifier
    private let state = Mutex(State())

    /// Creates a status line that publishes through `notifier`.
    public init(notifier: any Notifier) {
        self.notifier = notifier
    }

    /// Sets (or, with `nil`, removes) one part and publishes the line if it changed.
    public func set(_ part: String, _ text: String?) {
        // Sent under the lock so that concurrent updates reach systemd in order.
        state.withLock { state in
            if let text {
                if state.parts.updateValue(text, forKey: part) == nil { state.order.append(part) }
            } else if state.parts.removeValue(forKey: part) != nil {
                state.order.removeAll { $0 == part }
            }
            let line = state.order.compactMap { state.parts[$0] }.joined(separator: "; ")
            guard line != state.lastSent else { return }
            state.lastSent = line
            notifier.send(.status(line))
        }
    }

    /// The current line.
    public var current: String {
        state.withLock { state in state.order.compactMap { state.parts[$0] }.joined(separator: "; ") }
    }
}
