import CMalloc
import DefenderAPI
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Systemd
import Timekeeping

/// The forwarding pipeline as one service: a poller per tenant on a Dispatch timer and a
/// delivery worker per sink, all reporting progress to the health monitor. A reload rebuilds
/// the components from the new configuration; the outbox lives on disk, so nothing queued
/// is lost (alerts queued for sinks that were removed are dropped, with a warning).
public final class Pipeline: Service, CustomStringConvertible {
    private let store: StateStore
    private let transport: any HTTPTransport
    private let health: HealthMonitor
    private let statusLine: StatusLine
    private let status: PipelineStatus
    private let clock: MonotonicClock
    private let logger: Logger
    private let updates: AsyncStream<Configuration>
    private let updatesContinuation: AsyncStream<Configuration>.Continuation
    private let initial: Configuration
    private let sinks = Mutex<[String: any AlertSink]>([:])
    /// Test-only fault injection: the tenant whose poller hangs (see the README).
    private let hangingTenant = ProcessInfo.processInfo.environment["DEFENDER_ALERTD_TEST_HANG_POLLER"]

    public var description: String { "Pipeline" }

    public init(configuration: Configuration, store: StateStore, transport: any HTTPTransport, health: HealthMonitor,
                statusLine: StatusLine, clock: MonotonicClock = .continuous, logger: Logger) {
        self.initial = configuration
        self.store = store
        self.transport = transport
        self.health = health
        self.statusLine = statusLine
        self.status = PipelineStatus(clock: clock)
        self.clock = clock
        self.logger = logger
        (updates, updatesContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Switches to a new (valid) configuration.
    public func apply(_ configuration: Configuration) {
        updatesContinuation.yield(configuration)
    }

    /// Reopens file sinks (SIGHUP, for logrotate).
    public func reopenSinks() async {
        for sink in sinks.withLock({ Array($0.values) }) { await sink.reopen() }
    }

    public func run() async throws {
        var configuration = initial
        var iterator = updates.makeAsyncIterator()
        while true {
            guard let next = await runGeneration(configuration, updates: &iterator) else { return }
            configuration = next
            logger.notice("pipeline reconfigured", metadata: ["tenants": "\(configuration.tenants.count)", "sinks": "\(configuration.sinks.count)"])
        }
    }

    /// Runs the components of one configuration until shutdown (returns nil) or a new
    /// configuration arrives (returns it).
    private func runGeneration(_ configuration: Configuration, updates: inout AsyncStream<Configuration>.AsyncIterator) async -> Configuration? {
        let stopped = Mutex(false)
        let stop: @Sendable () -> Bool = { stopped.withLock { $0 } }
        let sinkNames = Set(configuration.sinks.map(\.name))
        do {
            let dropped = try store.dropOutbox(except: sinkNames)
            if dropped > 0 { logger.warning("dropped \(dropped) alerts queued for sinks that are no longer configured") }
        } catch {
            logger.error("\(error)")
        }
        status.retain(tenants: Set(configuration.tenants.map(\.name)), sinks: sinkNames)
        for component in health.registeredComponents where component.hasPrefix("poller:") || component.hasPrefix("sink:") {
            health.deregister(component)
        }
        let signals = Dictionary(uniqueKeysWithValues: configuration.sinks.map { ($0.name, OutboxSignal()) })
        let workers = configuration.sinks.map { makeWorker($0, in: configuration, signal: signals[$0.name]!) }
        let pollers = configuration.tenants.compactMap { makePoller($0, configuration: configuration, signals: signals) }

        let iterator = UncheckedBox(updates)
        let next: Configuration? = await withTaskGroup(of: Configuration?.self) { group in
            for worker in workers {
                group.addTask { await worker.run(shouldStop: stop); return nil }
            }
            for (poller, interval) in pollers {
                group.addTask { await self.runPoller(poller, every: interval, timeout: configuration.service.pollTimeout, stop: stop); return nil }
            }
            group.addTask {
                var sincePrune: Duration = .seconds(3600)
                var sinceTrim: Duration = .zero
                while !stop(), !Task.isCancelled {
                    self.refreshStatus()
                    if sinceTrim >= .seconds(30) {
                        // Heap memory freed since (a backlog's pages) goes back to the system.
                        sinceTrim = .zero
                        _ = malloc_trim(0)
                    }
                    if sincePrune >= .seconds(3600) {
                        sincePrune = .zero
                        do {
                            let pruned = try self.store.pruneDedupKeys()
                            if pruned > 0 { self.logger.info("pruned old dedup keys", metadata: ["keys": "\(pruned)"]) }
                        } catch {
                            self.logger.error("\(error)")
                        }
                    }
                    try? await self.clock.sleep(.seconds(2))
                    sincePrune += .seconds(2)
                    sinceTrim += .seconds(2)
                }
                return nil
            }
            // The control task: a new configuration, or the end of the service.
            let decision = await cancelWhenGracefulShutdownOrNil { await iterator.value.next() }
            stopped.withLock { $0 = true }
            // Workers finish the batch in hand; pollers abandon their request (nothing is
            // stored before a page is complete).
            group.cancelAll()
            await group.waitForAll()
            return decision
        }
        updates = iterator.value
        // Connections of this generation's sinks close (a RELP session says goodbye).
        for sink in sinks.withLock({ sinks in defer { sinks.removeAll() }; return Array(sinks.values) }) { await sink.shutdown() }
        refreshStatus()
        return next
    }

    /// The sink `sink` of `configuration` describes.
    public static func makeSink(_ sink: SinkConfiguration, in configuration: Configuration) -> any AlertSink {
        let showsTenant = configuration.tenantCount(sendingTo: sink.name) > 1
        switch sink.kind {
        case .journal: return JournalSink()
        case .stdout(let format): return StdoutSink(layout: RecordLine(format: format, showsTenant: showsTenant))
        case .file(let path, let format, let maxSize, let maxFiles):
            return FileSink(path: path, layout: RecordLine(format: format, showsTenant: showsTenant), maxSize: maxSize, maxFiles: maxFiles)
        case .syslog(let settings): return SyslogSink(settings: settings)
        case .http(let settings): return HTTPSink(settings: settings, proxy: configuration.service.httpSettings().proxy)
        }
    }

    private func makeWorker(_ configuration: SinkConfiguration, in whole: Configuration, signal: OutboxSignal) -> SinkWorker {
        let sink = Self.makeSink(configuration, in: whole)
        sinks.withLock { $0[configuration.name] = sink }
        let reporter = health.register("sink:\(configuration.name)", allowance: .seconds(60))
        return SinkWorker(name: configuration.name, sink: sink, store: store, batchSize: sink.batchSize, linger: sink.linger, clock: clock,
                          progress: { reporter.progress() }, status: status, signal: signal, logger: logger)
    }

    private func makePoller(_ tenant: TenantConfiguration, configuration: Configuration, signals: [String: OutboxSignal]) -> (TenantPoller, Duration)? {
        let connection: TenantConnection
        do {
            connection = try TenantConnection(tenant: tenant, transport: transport, clock: clock, logger: logger)
        } catch {
            logger.critical("tenant \(tenant.name) cannot be polled: \(error)")
            status.record(tenant: tenant.name, .failed("\(error)"))
            return nil
        }
        let interval = configuration.service.pollInterval
        let reporter = health.register("poller:\(tenant.name)", allowance: interval + configuration.service.pollTimeout + .seconds(10))
        let sinks = configuration.sinks(for: tenant).map(\.name)
        let wake = sinks.compactMap { signals[$0] }
        let poller = TenantPoller(tenant: tenant, connection: connection, store: store,
                                  sinks: sinks, maxOutbox: configuration.service.maxOutbox,
                                  progress: { reporter.progress() }, queued: { for signal in wake { signal.signal() } },
                                  status: status, logger: logger)
        return (poller, interval)
    }

    private func runPoller(_ poller: TenantPoller, every interval: Duration, timeout: Duration, stop: @escaping @Sendable () -> Bool) async {
        let jitter = min(interval / 10, .seconds(5))
        for await _ in Ticker.ticks(every: interval, jitter: jitter) {
            if stop() || Task.isCancelled { return }
            if hangingTenant == poller.tenant.name {
                // Fault injection for the watchdog test: a poller that hangs and ignores cancellation.
                await withUnsafeContinuation { (_: UnsafeContinuation<Void, Never>) in }
            }
            // The hard deadline: the poll is cancelled when it runs out.
            let deadlinePassed = await withTaskGroup(of: Bool.self) { group in
                group.addTask { await poller.pollOnce(); return false }
                group.addTask { (try? await self.clock.sleep(timeout)) != nil }
                let first = await group.next() ?? false
                group.cancelAll()
                return first
            }
            if deadlinePassed, !stop(), !Task.isCancelled {
                logger.error("poll did not finish within poll_timeout; the pages read are kept and the next poll goes on from there",
                             metadata: ["tenant": "\(poller.tenant.name)", "poll_timeout": "\(ConfigDuration.format(timeout))"])
                status.record(tenant: poller.tenant.name, .failed("no answer within poll_timeout \(ConfigDuration.format(timeout))"))
            }
        }
    }

    private func refreshStatus() {
        if let depth = try? store.outboxDepth().values.reduce(0, +) { status.outbox(depth) }
        statusLine.set("pipeline", status.line)
    }
}

/// Moves a non-Sendable iterator into a task group's child task. Safe: only the control task
/// touches it while the group runs, and the parent only after the group has finished.
private final class UncheckedBox<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// Runs `body`, returning `nil` as soon as a graceful shutdown begins.
private func cancelWhenGracefulShutdownOrNil<T: Sendable>(_ body: @escaping @Sendable () async -> T?) async -> T? {
    await cancelWhenGracefulShutdown { await body() } ?? nil
}
