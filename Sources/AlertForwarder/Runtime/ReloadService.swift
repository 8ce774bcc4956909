import ServiceLifecycle
import UnixSignals

/// Runs a reload each time SIGHUP arrives, one at a time, until the group shuts down.
struct ReloadService: Service, CustomStringConvertible {
    let signals: UnixSignalsSequence
    let reload: @Sendable () async -> Void

    init(signals: UnixSignalsSequence, reload: @escaping @Sendable () async -> Void) {
        self.signals = signals
        self.reload = reload
    }

    func run() async throws {
        for await _ in signals.cancelOnGracefulShutdown() {
            await reload()
        }
    }

    var description: String { "ReloadService" }
}
