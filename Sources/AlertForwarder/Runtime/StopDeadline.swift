import Dispatch
import Foundation
import Logging
import Synchronization
import Timekeeping

/// The latest a stop may end: armed when the daemon begins to stop (SIGTERM, SIGINT), it ends
/// the process if it is still there `after` that, with a critical line saying what the stop
/// still waited for. The services have 20 s to stop gracefully, then they are cancelled; a
/// part that does not end even then would otherwise hold the process until systemd's
/// `TimeoutStopSec=` (30 s in the unit) killed it without a word. Ending it loses nothing:
/// what was not delivered is in the outbox, what was not admitted is read again from the
/// watermark, as after a `kill -9` (the reliability table's rows). A Dispatch timer, not a
/// task: it fires whatever the tasks of the process are doing.
public final class StopDeadline: Sendable {
    private let after: Duration
    private let logger: Logger
    private let report: @Sendable () -> String
    private let exit: @Sendable (Int32) -> Void
    // DispatchSourceTimer is thread-safe but not Sendable on Linux; only set under the lock.
    private let timer = Mutex<(any DispatchSourceTimer)?>(nil)

    /// `report`: what the stop still waits for; `exit`: how the process ends (with 70,
    /// EX_SOFTWARE), straight out by default (exit() would run atexit handlers and flush
    /// streams whose locks a stuck thread may hold).
    public init(
        after: Duration, logger: Logger, report: @escaping @Sendable () -> String,
        exit: @escaping @Sendable (Int32) -> Void = { _exit($0) }
    ) {
        self.after = after
        self.logger = logger
        self.report = report
        self.exit = exit
    }

    /// Starts the countdown (once; later calls do nothing).
    public func arm() {
        timer.withLock { timer in
            guard timer == nil else { return }
            let source = DispatchSource.makeTimerSource(queue: .global())
            source.setEventHandler { [after, logger, report, exit] in
                logger.critical(
                    "the daemon did not stop within \(after.formatted()) of the signal; it exits now (nothing is lost: what was not delivered stays queued, what was not admitted is read again). This is a bug: please report it with this line",
                    metadata: ["waiting_for": "\(report())"])
                exit(70)  // EX_SOFTWARE
            }
            source.schedule(deadline: .now() + .nanoseconds(Int(after.totalNanoseconds)))
            source.resume()
            timer = source
        }
    }

    /// Stops the countdown: the stop ended.
    public func disarm() {
        timer.withLock { timer in
            timer?.cancel()
            timer = nil
        }
    }
}
