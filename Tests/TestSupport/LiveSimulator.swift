import DefenderAPI
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

/// `simulator` served on loopback and an HTTP client, for `body`; the client is always shut down.
public func withLiveSimulatorAndClient(
    _ simulator: SimulatedDefender, tls: SimulatorTLS? = nil, settings: DefenderHTTPClient.Settings = .init(),
    _ body: @Sendable (_ base: String, _ transport: DefenderHTTPClient) async throws -> Void
) async throws {
    let transport = try DefenderHTTPClient(settings: settings)
    do {
        try await withLiveSimulator(simulator, tls: tls) { base in try await body(base, transport) }
    } catch {
        await transport.shutdown()
        throw error
    }
    await transport.shutdown()
}
