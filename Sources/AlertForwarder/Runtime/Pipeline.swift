import DefenderAPI
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Systemd
import Telemetry
import Timekeeping

/// The forwarding pipeline as one service: a poller per tenant on a Dispatch timer and a
/// delivery worker per sink, all reporting progress to the health monitor. A reload rebuilds
/// the components from the new configuration; the outbox lives on disk, so nothing queued
/// is lost (alerts queued for sinks that were removed are dropped, with a warning).
public final class Pipeline: Service, CustomStringConvertible {
    /// The parts a pipeline is built from; tests replace some of them.
    public struct Parts: Sendable {
        /// How far apart the tenants' first polls start (``JobScheduler/firstDue(count:interval:spacing:start:)``).
        public var firstPollSpacing: Duration
        /// How late a poll may start so that polls due close together start together
        /// (``JobScheduler/leeway``); at most a tenth of the interval.
        public var pollLeeway: Duration
        /// The sink a configuration describes.
        public var sink: @Sendable (SinkConfiguration, Configuration) -> any AlertSink
        /// What polls a tenant: its ``TenantPoller``, or something a test puts around it.
        public var poller: @Sendable (TenantPoller) -> any TenantPolling

        /// First polls 50 ms apart, started up to 500 ms late together, the configured sinks, the
        /// pollers as they are.
        public static var production: Parts {
            Parts(firstPollSpacing: .milliseconds(50), pollLeeway: .milliseconds(500), sink: Pipeline.makeSink, poller: { $0 })
        }
    }

    private let store: StateStore
    private let clients: TenantClientCache
    private let health: HealthMonitor
    private let statusLine: StatusLine
    private let status: PipelineStatus
    private let clock: MonotonicClock
    private let parts: Parts
    private let logger: Logger
    private let updates: AsyncStream<Configuration>
    private let updatesContinuation: AsyncStream<Configuration>.Continuation
    private let initial: Configuration
    private let sinks = Mutex<[String: any AlertSink]>([:])
    /// How many tasks of each named part run now (see ``running``).
    private let runningParts = Mutex<[String: Int]>([:])
    private let telemetry: Telemetry
    /// The configuration in force (for the gauges a scrape reads).
    private let current: Mutex<Configuration>

    public var description: String { "Pipeline" }

    /// In a group on PostgreSQL: the tenants this daemon holds (it polls only those).
    private let leases: TenantLeases?

    public init(
        configuration: Configuration, store: StateStore, transport: any HTTPTransport, health: HealthMonitor,
        statusLine: StatusLine, clock: MonotonicClock = .continuous, parts: Parts = .production, telemetry: Telemetry = Telemetry(),
        leases: TenantLeases? = nil, userTokens: UserTokenStorage? = nil, logger: Logger
    ) {
        self.leases = leases
        self.initial = configuration
        self.current = Mutex(configuration)
        self.telemetry = telemetry
        self.store = store
        self.clients = TenantClientCache(
            transport: transport, clock: clock, telemetry: telemetry,
            userTokens: userTokens ?? configuration.service.userTokens(), leases: leases, logger: logger)
        self.health = health
        self.statusLine = statusLine
        self.status = PipelineStatus(clock: clock)
        self.clock = clock
        self.parts = parts
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
        current.withLock { $0 = configuration }
        let stopped = Mutex(false)
        let stop: @Sendable () -> Bool = { stopped.withLock { $0 } }
        let sinkNames = Set(configuration.sinks.map(\.name))
        do {
            let dropped = try await store.outbox.drop(except: sinkNames)
            if dropped > 0 { logger.warning("dropped the alerts queued for sinks that are no longer configured", metadata: ["alerts": "\(dropped)"]) }
        } catch {
            logger.error("\(error)")
        }
        status.retain(tenants: Set(configuration.tenants.flatMap(\.streams).map(\.key)), sinks: sinkNames)
        telemetry.retain("tenant", values: Set(configuration.tenants.map(\.name)))
        telemetry.retain(
            ["tenant", "records"], values: Set(configuration.tenants.flatMap { tenant in tenant.streams.map { [tenant.name, $0.kind.plural] } }))
        telemetry.retain("sink", values: sinkNames)
        for component in health.registeredComponents where component.hasPrefix("poller:") || component.hasPrefix("sink:") {
            health.deregister(component)
        }
        let signals = Dictionary(uniqueKeysWithValues: configuration.sinks.map { ($0.name, OutboxSignal()) })
        let workers = configuration.sinks.map { makeWorker($0, in: configuration, signal: signals[$0.name]!) }
        let pollers = await makePollers(configuration, signals: signals)
        let housekeeping = Housekeeping(store: store, clock: clock, refreshStatus: { await self.refreshStatus() }, logger: logger)

        let iterator = UncheckedBox(updates)
        let next: Configuration? = await withTaskGroup(of: Configuration?.self) { group in
            for worker in workers {
                group.addTask {
                    await self.tracked("sink \(worker.name)") { await worker.run(shouldStop: stop) }; return nil
                }
            }
            group.addTask {
                await self.runSchedule(pollers, of: configuration, stop: stop); return nil
            }
            group.addTask {
                await self.tracked("housekeeping") { await housekeeping.run(stop: stop) }; return nil
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
        for sink in sinks.withLock({ sinks in
            defer { sinks.removeAll() }; return Array(sinks.values)
        }) { await sink.shutdown() }
        await refreshStatus()
        return next
    }

    /// The parts of the pipeline running now (sinks, pollers, sweeps, housekeeping), by name:
    /// what a stop that does not end waits for.
    public var running: [String] {
        runningParts.withLock { $0.filter { $0.value > 0 }.keys.sorted() }
    }

    private func tracked<Result>(_ name: String, _ body: () async -> Result) async -> Result {
        runningParts.withLock { $0[name, default: 0] += 1 }
        defer { runningParts.withLock { $0[name, default: 1] -= 1 } }
        return await body()
    }

    /// The sink `sink` of `configuration` describes.
    public static func makeSink(_ sink: SinkConfiguration, in configuration: Configuration) -> any AlertSink {
        let showsTenant = configuration.tenantCount(sendingTo: sink.name) > 1
        switch sink.kind {
        case .journal: return JournalSink()
        case .stdout(let format): return StdoutSink(layout: RecordLine(format: format, showsTenant: showsTenant, shape: sink.shape))
        case .file(let path, let format, let maxSize, let maxFiles):
            return FileSink(
                path: path, layout: RecordLine(format: format, showsTenant: showsTenant, shape: sink.shape), maxSize: maxSize, maxFiles: maxFiles)
        case .syslog(let settings): return SyslogSink(settings: settings)
        case .http(let settings): return HTTPSink(settings: settings, proxy: configuration.service.httpSettings().proxy)
        }
    }

    private func makeWorker(_ configuration: SinkConfiguration, in whole: Configuration, signal: OutboxSignal) -> SinkWorker {
        let sink = parts.sink(configuration, whole)
        sinks.withLock { $0[configuration.name] = sink }
        let reporter = health.register("sink:\(configuration.name)", allowance: .seconds(60))
        let metrics = SinkMetrics(telemetry: telemetry, sink: configuration.name)
        metrics.prepare()
        return SinkWorker(
            name: configuration.name, sink: sink, store: store, batchSize: sink.batchSize, linger: sink.linger, clock: clock,
            progress: { reporter.progress() }, status: status, signal: signal, metrics: metrics, logger: logger)
    }

    /// A poller for each tenant whose credential loads, on the token caches and rate budgets
    /// the tenant's app already has (a reload keeps them): what polls (the poller, or what the
    /// parts put around it) and the poller itself (which also sweeps).
    private func makePollers(_ configuration: Configuration, signals: [String: OutboxSignal]) async -> [(any TenantPolling, TenantPoller)] {
        let interval = configuration.service.pollInterval
        var pollers: [(any TenantPolling, TenantPoller)] = []
        let outboxDepth = OutboxDepthReading(store: store, shared: leases != nil)
        for (tenant, built) in zip(configuration.tenants, await clients.clients(for: configuration.tenants)) {
            let tenantClients: TenantClients
            switch built {
            case .success(let ready): tenantClients = ready
            case .failure(let error):
                logger.critical("tenant cannot be polled: \(error)", metadata: ["tenant": "\(tenant.name)"])
                status.record(tenant: tenant.name, .failed("\(error)"))
                continue
            }
            let sinkConfigurations = configuration.sinks(for: tenant)
            let sinks = sinkConfigurations.map(\.name)
            let wake = sinks.compactMap { signals[$0] }
            // A poller for each kind of record read (alerts, incidents), on the tenant's one
            // client and call budget, with series of its own (`records`).
            for stream in tenant.streams {
                let metrics = TenantMetrics(telemetry: telemetry, tenant: tenant.name, api: tenant.api.rawValue, records: stream.kind.plural)
                metrics.prepare(pollInterval: interval, overlap: tenant.overlap)
                let reporter = health.register("poller:\(stream.key)", allowance: interval + configuration.service.pollTimeout + .seconds(10))
                let poller = TenantPoller(
                    tenant: tenant, kind: stream.kind, clients: tenantClients, store: store, sinks: sinks,
                    storesHeadline: sinkConfigurations.contains(where: \.showsHeadline), maxOutbox: configuration.service.maxOutbox, clock: clock,
                    progress: { reporter.progress() }, queued: { for signal in wake { signal.signal() } }, status: status, metrics: metrics,
                    leases: leases, outboxDepth: outboxDepth, logger: tenantClients.logger)
                pollers.append((parts.poller(poller), poller))
            }
        }
        return pollers
    }

    /// Runs every poller's polls, and the sweeps of those that reconcile, on one scheduler:
    /// the first polls `firstPollSpacing` apart (or spread over the interval), each next one an
    /// interval after the last was due; a sweep's first step with its tenant's first poll.
    private func runSchedule(
        _ pollers: [(any TenantPolling, TenantPoller)], of configuration: Configuration,
        stop: @escaping @Sendable () -> Bool
    ) async {
        let (interval, timeout) = (configuration.service.pollInterval, configuration.service.pollTimeout)
        // In a group the leases come from the first round with the database, just after the
        // start: first polls wait for it (up to 5 s), or they would find no lease and wait an
        // interval.
        let start = clock.now() + (leases == nil ? .zero : min(interval / 10, .seconds(5)))
        let first = JobScheduler.firstDue(count: pollers.count, interval: interval, spacing: parts.firstPollSpacing, start: start)
        let lateness = SchedulerMetrics(telemetry: telemetry)
        let deadlines = DeadlineWatch(clock: clock)
        defer { deadlines.stop() }
        var jobs: [(first: Duration, job: JobScheduler.Job)] = []
        /// Each poller's poll job, by the poller's index.
        var pollJob: [Int] = []
        for ((polling, poller), due) in zip(pollers, first) {
            pollJob.append(jobs.count)
            // Named once: a poll starts hundreds of times a second in a large daemon.
            let pollName = "poller \(poller.stream.key)"
            jobs.append(
                (
                    due,
                    { [clock] due in
                        lateness.pollStarted(late: clock.now() - due)
                        await self.tracked(pollName) {
                            await self.poll(polling, timeout: timeout, deadlines: deadlines, stop: stop)
                        }
                        return JobScheduler.next(after: due, every: interval, now: clock.now())
                    }
                ))
            if poller.tenant.reconciles {
                let sweeps = SweepSchedule(poller: poller, store: store, clock: clock, logger: logger)
                let sweepName = "sweeps \(poller.stream.key)"
                jobs.append((due, { _ in await self.tracked(sweepName) { await sweeps.step() } }))
            }
        }
        // A tenant this daemon takes over (a member left, or the group rebalanced) is polled at
        // once (spread, when many are): its last poll by the member before may be most of an
        // interval old.
        let nudges = JobNudges(spacing: parts.firstPollSpacing, window: interval)
        let pollJobs = Dictionary(grouping: pollers.indices) { pollers[$0].1.tenant.name }.mapValues { $0.map { pollJob[$0] } }
        leases?.whenTaken { tenants in nudges.nudge(tenants.flatMap { pollJobs[$0] ?? [] }) }
        defer { leases?.whenTaken(nil) }
        var scheduler = JobScheduler(clock: clock)
        scheduler.leeway = min(parts.pollLeeway, interval / 10)
        await scheduler.run(jobs, nudges: nudges, stop: stop)
    }

    /// One poll, cancelled when it outlasts `timeout` (the hard deadline).
    private func poll(_ poller: any TenantPolling, timeout: Duration, deadlines: DeadlineWatch, stop: @escaping @Sendable () -> Bool) async {
        if stop() || Task.isCancelled { return }
        let deadlinePassed = await deadlines.run(timeout: timeout) { await poller.pollOnce() }
        if deadlinePassed, !stop(), !Task.isCancelled {
            logger.error(
                "poll did not finish within poll_timeout; the pages read are kept and the next poll goes on from there",
                metadata: [
                    "tenant": "\(poller.tenant.name)", "records": "\(poller.stream.kind.plural)",
                    "poll_timeout": "\(ConfigDuration.format(timeout))",
                ])
            status.record(tenant: poller.stream.key, .failed("no answer within poll_timeout \(ConfigDuration.format(timeout))"))
        }
    }

    /// Brings the gauges a scrape shows up to date: each tenant's watermark age, each sink's
    /// queue and the age of its oldest alert.
    public func refreshMetrics(now: Date = Date()) async {
        let configuration = current.withLock { $0 }
        for tenant in configuration.tenants {
            for stream in tenant.streams {
                guard let watermark = try? await store.admission.watermark(of: stream) else { continue }
                TenantMetrics(telemetry: telemetry, tenant: tenant.name, api: tenant.api.rawValue, records: stream.kind.plural)
                    .watermark(age: .milliseconds(Int64(now.timeIntervalSince(watermark.date) * 1000)))
            }
        }
        let depth = (try? await store.outbox.depth()) ?? [:]
        for sink in configuration.sinks {
            let oldest = (depth[sink.name] ?? 0) > 0 ? try? await store.outbox.oldestPending(sink: sink.name) : nil
            SinkMetrics(telemetry: telemetry, sink: sink.name)
                .outbox(depth: depth[sink.name] ?? 0, oldestAge: oldest.map { .milliseconds(Int64(now.timeIntervalSince($0) * 1000)) })
        }
    }

    /// Tenants and sinks that have kept failing for longer than `allowance`.
    public func failures(longerThan allowance: Duration) -> [PipelineStatus.Failure] {
        status.failures(longerThan: allowance)
    }

    private func refreshStatus() async {
        if let depth = try? await store.outbox.depth().values.reduce(0, +) { status.outbox(depth) }
        if let quarantined = try? await store.quarantine.counts() { status.quarantined(quarantined) }
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
