import Dispatch
import Foundation

/// A POSIX thread of a test helper's own (a proxy's or a server's loop), neither Foundation's
/// `Thread` nor a thread of Dispatch's or Swift's pools.
public enum DedicatedThread {
    /// Runs `body` on a new detached thread; returns once the thread runs it. Under a loaded
    /// `make test`, a partition proxy started with Foundation's `Thread` was seen not to accept
    /// a connection for 30 s: whatever the delay, a helper whose init returned is now serving.
    public static func start(_ body: @escaping @Sendable () -> Void) throws {
        // The caller's own reference: the thread releases the one it was given when `body`
        // returns, which may be before the wait below.
        let start = Start(body)
        let context = Unmanaged.passRetained(start).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread, nil,
            { context in
                let start = Unmanaged<Start>.fromOpaque(context!).takeRetainedValue()
                start.running.signal()
                start.body()
                return nil
            }, context)
        guard result == 0 else {
            Unmanaged<Start>.fromOpaque(context).release()
            throw LoopbackPort.PortError(description: "pthread_create: \(String(cString: strerror(result)))")
        }
        pthread_detach(thread)
        start.running.wait()
    }

    private final class Start: Sendable {
        let body: @Sendable () -> Void
        let running = DispatchSemaphore(value: 0)

        init(_ body: @escaping @Sendable () -> Void) {
            self.body = body
        }
    }
}
