import AlertForwarder
import ArgumentParser
import DefenderAPI
import Foundation
import Logging
import Systemd

/// `defender-alertd poll-once`: one poll and delivery cycle, then exit.
struct PollOnceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "poll-once",
        abstract: "Poll every tenant once and deliver what is queued, then exit (1 when anything failed)."
    )

    @OptionGroup var options: ConfigOption

    @Flag(help: "Print what would be forwarded, as JSON lines, and change no state.")
    var dryRun = false

    func run() async throws {
        let configuration = try loadConfiguration(options.config)
        let logControl = LogControl(configuration.service.logLevel, format: configuration.service.logFormat)
        LoggingSystem.bootstrap(LogTarget.stderr.makeHandler(control: logControl, redact: { SecretRedaction.shown($0, limit: 16_000) }))
        let logger = Logger(label: ProductInfo.name)
        let transport = try DefenderHTTPClient(settings: configuration.service.httpSettings())
        let succeeded: Bool
        if dryRun {
            succeeded = await DryRun.run(configuration: configuration, transport: transport, logger: logger)
        } else {
            let store: StateStore
            do { store = try StateStore.open(configuration.service, access: .owner) } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                throw ExitCode.failure
            }
            succeeded = await PollOnce.run(configuration: configuration, store: store, transport: transport, logger: logger)
            // The embedded database writes its log back into its file and closes, as the
            // daemon's does at a stop (without it a state.sqlite-wal of megabytes was left).
            await store.close()
        }
        await transport.shutdown()
        if !succeeded { throw ExitCode.failure }
    }
}
