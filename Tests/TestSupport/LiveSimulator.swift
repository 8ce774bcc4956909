import DefenderSimulator
import Foundation
import Logging

/// A ``SimulatedDefender`` served over real HTTP(S) on 127.0.0.1 for the duration of `body`.
public func withLiveSimulator(
    _ simulator: SimulatedDefender, tls: SimulatorTLS? = nil,
    _ body: @Sendable (_ baseURL: String) async throws -> Void
) async throws {
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    var logger = Logger(label: "live-simulator")
    logger.logLevel = .critical
    let server = try SimulatorServer(simulator: simulator, port: 0, tls: tls, logger: logger) { port in
        continuation.yield(port)
    }
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw SimulatorSetupError("the simulator did not start") }
        defer { group.cancelAll() }
        try await body("\(tls == nil ? "http" : "https")://127.0.0.1:\(port)")
    }
}
