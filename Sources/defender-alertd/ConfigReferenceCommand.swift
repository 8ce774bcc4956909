import AlertForwarder
import ArgumentParser
import DefenderAPI
import Foundation
import Timekeeping

/// `defender-alertd config-reference`: every configuration key with its type, default and
/// meaning, from the same table the loader validates against (the README's tables and the
/// `defender-alertd.toml(5)` man page are this command's output).
struct ConfigReferenceCommand: ParsableCommand {
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case markdown
        case man
    }

    static let configuration = CommandConfiguration(
        commandName: "config-reference",
        abstract: "Print every configuration key with its type, default and meaning.",
        discussion: "--format man writes the defender-alertd.toml(5) man page."
    )

    @Option(help: "markdown (the README's tables) or man (roff).")
    var format: Format = .markdown

    @Option(help: ArgumentHelp("The man page's date, YYYY-MM-DD (default: today).", valueName: "date"))
    var date: String?

    func run() {
        switch format {
        case .markdown: print(ConfigurationReference.markdown())
        case .man:
            print(
                ConfigurationReference.manPage(version: ProductInfo.version, date: date ?? Timestamp(Date()).description.prefix(10).description),
                terminator: "")
        }
    }
}
