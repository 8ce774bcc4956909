import AlertForwarder
import ArgumentParser
import DefenderAPI
import Foundation
import Logging
import Systemd
import UnixSignals

/// `defender-alertd run`: the daemon.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the daemon (the default command)."
    )

    @OptionGroup var options: ConfigOption

    @Option(name: .long, help: "Where logs go: journal, stderr, or auto (the journal when stderr is connected to it).")
    var logTarget: LogTarget = .auto

    func run() async throws {
        // A closed stdout or stderr (a stdout sink piped into a process that exited) must be a
        // write error the sink retries, not a SIGPIPE that kills the daemon. systemd ignores
        // SIGPIPE for services by default; outside systemd, do it here.
        signal(SIGPIPE, SIG_IGN)
        let configuration = try loadConfiguration(options.config)
        let logControl = LogControl(configuration.service.logLevel, format: configuration.service.logFormat)
        let target = logTarget.resolved()
        LoggingSystem.bootstrap(target.makeHandler(control: logControl, redact: { SecretRedaction.shown($0, limit: 16_000) }))
        let logger = Logger(label: ProductInfo.name)

        // Trap SIGHUP before telling systemd we are ready, so an early reload cannot kill us.
        let reloadSignals = await UnixSignalsSequence(trapping: .sighup)
        logger.notice(
            "\(ProductInfo.name) \(ProductInfo.version) starting: \(Daemon.summary(of: configuration))",
            metadata: ["config": "\(configuration.path)", "log_target": "\(target.rawValue)"])
        for warning in configuration.warnings { logger.warning("\(warning)", metadata: ["config": "\(configuration.path)"]) }
        do {
            let daemon = try Daemon(
                configuration: configuration, loader: ConfigurationLoader(), logControl: logControl,
                notifier: QueuedNotifier(SystemdNotifier()), logger: logger
            )
            // Weak: an armed deadline must not keep the daemon (and its state database, which
            // closes, checkpointing its log, when the daemon goes) alive once it has stopped.
            let deadline = StopDeadline(after: .seconds(25), logger: logger) { [weak daemon] in daemon?.stopReport ?? "the end of the process" }
            defer { deadline.disarm() }
            try await daemon.run(signals: reloadSignals, watchdog: WatchdogSettings.fromEnvironment(), onStopping: { deadline.arm() })
        } catch {
            logger.critical("fatal: \(error)")
            throw ExitCode.failure
        }
        logger.notice("\(ProductInfo.name) stopped")
    }
}

extension LogTarget: ExpressibleByArgument {}
