import Dispatch

/// Where work that blocks runs (SQLite commits with `synchronous = FULL`, `fsync`,
/// `fdatasync`, file appends): Dispatch's threads, never Swift's cooperative pool, which has one
/// thread per core and stalls every task while one of them waits for a disk.
enum Blocking {
    private static let queue: DispatchQueue = {
        let queue = DispatchQueue(label: "defender-alertd.blocking", attributes: .concurrent)
        queue.setSpecific(key: key, value: true)
        return queue
    }()
    private static let key = DispatchSpecificKey<Bool>()

    /// Whether the caller runs on one of these threads.
    static var onBlockingThread: Bool { DispatchQueue.getSpecific(key: key) == true }

    /// Runs `body` on a thread of its own and waits for it. Cancelling the waiting task does
    /// not interrupt it: a commit or a write that began is finished (a sink's confirmation cut
    /// off by a stop would send its alerts again).
    static func run<T: Sendable, Failure: Error>(_ body: @escaping @Sendable () throws(Failure) -> T) async throws(Failure) -> T {
        let result: Result<T, Failure> = await withCheckedContinuation { continuation in
            queue.async {
                do throws(Failure) { continuation.resume(returning: .success(try body())) } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }
}
