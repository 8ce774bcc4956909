import CMalloc
import Logging
import Timekeeping

/// The pipeline's periodic chores, on its clock: `STATUS=` refreshed every 2 s, freed heap
/// returned to the system every 30 s (a backlog's pages), old dedup keys pruned every hour.
struct Housekeeping: Sendable {
    let store: StateStore
    let clock: MonotonicClock
    let refreshStatus: @Sendable () async -> Void
    let logger: Logger

    static let statusInterval: Duration = .seconds(2)
    static let trimInterval: Duration = .seconds(30)
    static let pruneInterval: Duration = .seconds(3600)

    /// Runs until `stop()` or cancellation; prunes at once.
    func run(stop: @Sendable () -> Bool) async {
        var sincePrune = Self.pruneInterval
        var sinceTrim: Duration = .zero
        while !stop(), !Task.isCancelled {
            await refreshStatus()
            if sinceTrim >= Self.trimInterval {
                sinceTrim = .zero
                _ = malloc_trim(0)
            }
            if sincePrune >= Self.pruneInterval {
                sincePrune = .zero
                await prune()
            }
            guard (try? await clock.sleep(Self.statusInterval)) != nil else { return }
            sincePrune += Self.statusInterval
            sinceTrim += Self.statusInterval
        }
    }

    func prune() async {
        do {
            let pruned = try await store.admission.pruneDedupKeys()
            if pruned > 0 { logger.info("pruned old dedup keys", metadata: ["keys": "\(pruned)"]) }
        } catch {
            logger.error("\(error)")
        }
    }
}
