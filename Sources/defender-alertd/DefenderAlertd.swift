import AlertForwarder
import ArgumentParser
import DefenderAPI

/// The `defender-alertd` command line.
@main
struct DefenderAlertd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: ProductInfo.name,
        abstract: "Forwards Microsoft Defender for Endpoint alerts to the journal, files and other sinks.",
        discussion: """
            Exit codes: 0 clean stop, 78 invalid configuration or unsafe secret file, 1 any other fatal error.
            """,
        version: ProductInfo.version,
        subcommands: [RunCommand.self, CheckConfigCommand.self, TestAuthCommand.self, PollOnceCommand.self, StateCommand.self, ReloadCommand.self,
                      ConfigReferenceCommand.self],
        defaultSubcommand: RunCommand.self
    )
}

/// Options every command shares.
struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The configuration file.", valueName: "path"))
    var config: String = ConfigurationLoader.defaultPath
}

/// Exit codes of DESIGN.md §4.1.
enum ExitStatus {
    /// EX_CONFIG: invalid configuration, missing or over-permissive secret file.
    static let configuration = ExitCode(78)
}
