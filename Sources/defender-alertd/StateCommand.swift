import AlertForwarder
import ArgumentParser
import Foundation

/// `defender-alertd state show|reset`.
struct StateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Inspect or reset the cursor, dedup keys and outbox.",
        subcommands: [Show.self, Reset.self]
    )

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Watermark and dedup keys per tenant, outbox depth per sink.")
        @OptionGroup var options: ConfigOption
        @Option(help: "Only this tenant.") var tenant: String?

        func run() throws {
            let configuration = try loadConfiguration(options.config)
            let store = try openStore(configuration)
            let states = try store.tenants()
            for name in configuration.tenants.map(\.name) where tenant == nil || tenant == name {
                let state = states.first { $0.tenant == name }
                print("tenant \(name): watermark \(state?.watermark ?? "none (first poll fetches lookback)"), \(state?.dedupKeys ?? 0) dedup keys")
            }
            let depth = try store.outboxDepth()
            for sink in configuration.sinks {
                print("sink \(sink.name): \(depth[sink.name] ?? 0) alerts queued")
            }
        }
    }

    struct Reset: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forget a tenant's cursor and dedup keys: the next poll starts from lookback and may deliver alerts again.")
        @OptionGroup var options: ConfigOption
        @Option(help: "The tenant to reset.") var tenant: String
        @Flag(help: "Confirm.") var yes = false

        func run() throws {
            let configuration = try loadConfiguration(options.config)
            guard configuration.tenants.contains(where: { $0.name == tenant }) else {
                throw ValidationError("no [[tenant]] named \"\(tenant)\"")
            }
            guard yes else {
                throw ValidationError("resetting \(tenant) makes the next poll fetch `lookback` again and re-deliver what it finds; add --yes to confirm")
            }
            try openStore(configuration).reset(tenant: tenant)
            print("tenant \(tenant): cursor and dedup keys forgotten; stop the daemon first if it is running")
        }
    }
}

func openStore(_ configuration: Configuration) throws -> StateStore {
    do {
        return try StateStore(directory: configuration.service.stateDirectory)
    } catch {
        FileHandle.standardError.write(Data("\(error)\n".utf8))
        throw ExitCode.failure
    }
}
