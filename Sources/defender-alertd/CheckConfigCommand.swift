import AlertForwarder
import ArgumentParser
import Foundation

/// `defender-alertd check-config`: validates everything that can be checked offline.
struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration file, secrets included; exit 0 when valid, 78 when not."
    )

    @OptionGroup var options: ConfigOption

    func run() throws {
        let configuration = try loadConfiguration(options.config)
        print("\(configuration.path): configuration is valid")
        print(configuration.overview)
        for warning in configuration.warnings {
            FileHandle.standardError.write(Data("\(configuration.path): warning: \(warning)\n".utf8))
        }
    }
}

/// Loads the configuration or prints every problem to stderr and exits 78.
func loadConfiguration(_ path: String, tokenKeyOptionalOutsideService: Bool = false) throws -> Configuration {
    do {
        var loader = ConfigurationLoader()
        loader.tokenKeyOptionalOutsideService = tokenKeyOptionalOutsideService
        return try loader.load(path: path)
    } catch {
        FileHandle.standardError.write(Data((error.description + "\n").utf8))
        let count = error.errors.count
        FileHandle.standardError.write(Data("\(count) problem\(count == 1 ? "" : "s") found; the configuration is invalid\n".utf8))
        throw ExitStatus.configuration
    }
}
