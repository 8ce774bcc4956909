import DefenderAPI
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Systemd
import Telemetry
import Timekeeping
import UnixSignals

/// The running daemon: its current configuration, its health and its services.
///
/// The executable builds one `Daemon` from a valid configuration and calls
/// ``run(signals:watchdog:onStopping:)``; everything else (reload, status, watchdog) lives
/// here so that tests can drive it without a process.
public final class Daemon: Sendable {
    private let loader: ConfigurationLoader
    private let current: Mutex<Configuration>
    private let logControl: LogControl
    private let notifier: any Notifier
    private let logger: Logger
    /// The `STATUS=` line.
    public let status: StatusLine
    /// Progress of every long-running component.
    public let health: HealthMonitor
    private let clock: MonotonicClock
    /// The state database.
    public let store: StateStore
    /// In a group on PostgreSQL (`state_database`): the database and this daemon's membership.
    private let group: (database: StateDatabase, coordinator: GroupCoordinator)?
    private let transport: DefenderHTTPClient
    private let pipeline: Pipeline
    /// The metrics `/metrics` shows.
    public let telemetry: Telemetry
    private let startedAt = Date()
    /// The step of a stop after the services ended.
    private let stopping = Mutex<String?>(nil)
    /// Hears the address the metrics server listens on, once it does.
    private let onMetricsReady: @Sendable (String) -> Void

    /// Creates the daemon for an already validated configuration: opens the state database and
    /// the HTTP client. Call ``run(signals:watchdog:)`` (which shuts the client down) afterwards.
    public init(
        configuration: Configuration,
        loader: ConfigurationLoader,
        logControl: LogControl,
        notifier: any Notifier,
        clock: MonotonicClock = .continuous,
        parts: Pipeline.Parts = .production,
        onMetricsReady: @escaping @Sendable (String) -> Void = { _ in },
        logger: Logger
    ) throws {
        self.onMetricsReady = onMetricsReady
        self.loader = loader
        self.current = Mutex(configuration)
        self.logControl = logControl
        self.notifier = notifier
        self.clock = clock
        self.logger = logger
        self.status = StatusLine(notifier: notifier)
        self.health = HealthMonitor(clock: clock)
        self.telemetry = Telemetry()
        var leases: TenantLeases?
        if let settings = configuration.service.stateDatabase {
            let member = configuration.service.memberName ?? GroupCoordinator.defaultMemberName()
            let database = try StateDatabase(settings: settings, member: member, logger: logger)
            let held = TenantLeases(clock: clock)
            let fence = GroupFence(member: member, leases: held)
            self.store = StateStore.postgres(database, fence: fence)
            self.group = (
                database,
                GroupCoordinator(
                    fence: fence, database: database, ttl: settings.leaseTTL,
                    metrics: GroupMetrics(telemetry: telemetry), status: status, logger: logger)
            )
            leases = held
        } else {
            self.store = try StateStore.open(configuration.service)
            self.group = nil
        }
        var httpSettings = configuration.service.httpSettings()
        httpSettings.instance = group?.coordinator.member
        self.transport = try DefenderHTTPClient(settings: httpSettings)
        self.pipeline = Pipeline(
            configuration: configuration, store: store, transport: transport, health: health,
            statusLine: status, clock: clock, parts: parts, telemetry: telemetry, leases: leases,
            userTokens: configuration.service.userTokens(in: group?.database), logger: logger)
        apply(configuration)
    }

    /// The configuration in force.
    public var configuration: Configuration {
        current.withLock { $0 }
    }

    /// Runs every service of the daemon in one group until SIGTERM or SIGINT; SIGHUP (from
    /// `signals`, trapped before readiness) reloads. Shuts the HTTP client down at the end.
    /// `onStopping` runs when the daemon begins to stop (the executable arms its stop deadline).
    public func run(signals: UnixSignalsSequence, watchdog: WatchdogSettings?, onStopping: @escaping @Sendable () -> Void = {}) async throws {
        // Room for the pipeline's descriptors whatever the metrics server's clients do (it
        // holds about 64 connections at most).
        if let limit = DescriptorLimit.raiseSoftLimit() {
            if limit.after > limit.before {
                logger.info("limit of open descriptors raised to the hard limit", metadata: ["from": "\(limit.before)", "to": "\(limit.after)"])
            }
            if limit.after < Self.fewestDescriptors {
                logger.warning(
                    "the limit of open descriptors is \(limit.after), below \(Self.fewestDescriptors): with many sinks and tenants the daemon may run out (LimitNOFILE= in the unit, ulimit -n otherwise)",
                    metadata: ["limit": "\(limit.after)"])
            }
        }
        // The database first, then this daemon's membership: told of a shutdown last, after
        // the pipeline (which stops polling), so the leases are released when nothing polls.
        var services: [any Service] = group.map { [$0.database, $0.coordinator] } ?? []
        services += [
            WatchdogService(settings: watchdog, monitor: health, notifier: notifier, status: status, clock: clock, logger: logger),
            ReloadService(signals: signals) { [self] in await reload() },
            pipeline,
        ]
        if let address = configuration.service.metricsListen {
            services.append(
                MetricsServer(
                    address: address, telemetry: telemetry, beforeScrape: { [self] in await refreshMetrics() },
                    health: { [self] in healthReport() }, status: status, clock: clock, logger: logger,
                    onReady: onMetricsReady))
        }
        // Last: started after the others, told of a shutdown first.
        services.append(SystemdLifecycleService(notifier: notifier, status: status, onStopping: onStopping))
        var configuration = ServiceGroupConfiguration(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        // Within systemd's stop timeout (30 s): then in-flight work is abandoned; it is still
        // in the outbox or not yet admitted, so nothing is lost.
        configuration.maximumGracefulShutdownDuration = .seconds(20)
        do {
            try await ServiceGroup(configuration: configuration).run()
        } catch {
            await finish()
            throw error
        }
        await finish()
    }

    /// The end of a run: the HTTP client, then the state store.
    private func finish() async {
        stopping.withLock { $0 = "closing the HTTP client" }
        await shutdown()
        stopping.withLock { $0 = "closing the state database" }
        await store.close()
    }

    /// What a stop still waits for: the pipeline's parts still running, or the step after them.
    public var stopReport: String {
        if let step = stopping.withLock({ $0 }) { return step }
        let running = pipeline.running
        let parts = running.isEmpty ? "the services other than the pipeline" : "the pipeline's " + running.joined(separator: ", ")
        guard let calls = group?.database.callsUnderWay, !calls.isEmpty else { return parts }
        return parts + "; PostgreSQL calls under way: " + calls.joined(separator: ", ")
    }

    /// Below this limit of open descriptors the daemon warns at start.
    static let fewestDescriptors: UInt64 = 1024

    /// Closes the HTTP client; ``run(signals:watchdog:)`` does it when it ends.
    public func shutdown() async {
        await transport.shutdown()
    }

    /// Re-reads the configuration file: `RELOADING=1`, validate, apply or keep the old one
    /// (logging every problem), then `READY=1`.
    public func reload() async {
        let path = configuration.path
        notifier.send(.reloading(monotonicMicroseconds: MonotonicClock.systemMonotonicMicroseconds()))
        logger.notice("reloading configuration", metadata: ["config": "\(path)"])
        do {
            let new = try loader.load(path: path)
            // These are built into the running daemon at start (the state store, the HTTP
            // client): a change takes effect only at a restart, and is never silently ignored.
            let running = configuration.service
            let needsRestart = [
                ("state_directory", running.stateDirectory != new.service.stateDirectory),
                ("state_database", running.stateDatabase != new.service.stateDatabase),
                ("member_name", running.memberName != new.service.memberName),
                ("ca_file", running.caFile != new.service.caFile),
                ("proxy_url", running.proxyURL != new.service.proxyURL),
                ("the proxy password", running.proxyPassword != new.service.proxyPassword),
                ("metrics_listen", running.metricsListen != new.service.metricsListen),
                ("the token key", running.tokenKey != new.service.tokenKey),
            ].filter(\.1).map(\.0)
            if needsRestart.isEmpty {
                current.withLock { $0 = new }
                apply(new)
                pipeline.apply(new)
                logger.notice("configuration reloaded", metadata: ["config": "\(path)"])
                for warning in new.warnings { logger.warning("\(warning)", metadata: ["config": "\(path)"]) }
            } else {
                logger.error(
                    "new configuration rejected: \(needsRestart.joined(separator: ", ")) changed, which only a restart applies (systemctl restart defender-alertd); the running configuration stays in force",
                    metadata: ["config": "\(path)"])
            }
        } catch {
            for problem in error.errors {
                logger.error("\(problem)", metadata: ["config": "\(path)"])
            }
            logger.error(
                "new configuration rejected (\(error.errors.count) problem(s)); the running configuration stays in force",
                metadata: ["config": "\(path)"])
        }
        // Files are reopened in any case: logrotate sends SIGHUP after moving them.
        await pipeline.reopenSinks()
        notifier.send(.ready)
    }

    /// What `/healthz` and its probes answer now.
    public func healthReport() -> HealthReport {
        HealthReport(
            stalls: health.stalls(), failures: pipeline.failures(longerThan: configuration.service.unhealthyAfter),
            stateUnavailable: group?.database.unavailability)
    }

    /// The gauges of a scrape: the pipeline's, the process's, the build.
    public func refreshMetrics() async {
        await pipeline.refreshMetrics()
        telemetry.recordProcess(version: ProductInfo.version, startedAt: startedAt)
    }

    private func apply(_ configuration: Configuration) {
        logControl.level = configuration.service.logLevel
        logControl.format = configuration.service.logFormat
        group?.coordinator.setTenants(configuration.tenants.map(\.name))
        status.set("config", Self.summary(of: configuration))
    }

    /// `2 tenants (contoso, fabrikam), 3 sinks (journal, archive, siem)`; past 10 names, the
    /// first 10 and `...`.
    public static func summary(of configuration: Configuration) -> String {
        func list(_ names: [String], _ noun: String) -> String {
            let shown = names.prefix(PipelineStatus.tenantsShownOneByOne).joined(separator: ", ")
            return
                "\(names.count) \(noun)\(names.count == 1 ? "" : "s") (\(shown)\(names.count > PipelineStatus.tenantsShownOneByOne ? ", ..." : ""))"
        }
        return list(configuration.tenants.map(\.name), "tenant") + ", " + list(configuration.sinks.map(\.name), "sink")
    }
}
