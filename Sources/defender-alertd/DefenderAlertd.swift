import AlertForwarder
import ArgumentParser
import CMalloc
import DefenderAPI

/// The `defender-alertd` command line.
@main
struct DefenderAlertd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: ProductInfo.name,
        abstract:
            "Forwards Microsoft Defender alerts (Defender for Endpoint's API or Microsoft Graph) to the journal, files, syslog and HTTP receivers.",
        discussion: """
            Reads the alerts of Microsoft Defender tenants, from Defender for Endpoint's alerts API or from \
            Microsoft Graph security/alerts_v2 (every Defender XDR product), in app context or with a person's \
            sign-in, and delivers each new or updated alert to the configured sinks: the systemd journal, \
            JSON Lines files, standard output, syslog (UDP, TCP, TLS or RELP; JSON or CEF) and HTTP receivers \
            (Splunk HEC, Elasticsearch bulk, webhooks). Alerts are queued on disk (an append-only outbox log \
            and a SQLite database) before delivery, so none is lost across crashes, reboots or outages; an \
            alert already delivered is not sent again, except that a crash may repeat the last batch. It runs \
            as the systemd service defender-alertd.service (Type=notify, watchdog, STATUS= line).

            Configuration: /etc/defender-alertd/defender-alertd.toml, described in defender-alertd.toml(5) \
            and printed by `defender-alertd config-reference`. State: /var/lib/defender-alertd.

            Signals: SIGHUP reloads the configuration and reopens files; SIGTERM and SIGINT stop after the \
            batch in hand.

            Exit codes: 0 clean stop, 78 invalid configuration or unsafe secret file, 1 any other fatal error.
            """,
        version: ProductInfo.version,
        subcommands: [
            RunCommand.self, CheckConfigCommand.self, TestAuthCommand.self, LoginCommand.self, LogoutCommand.self, PollOnceCommand.self,
            StateCommand.self, ReloadCommand.self,
            ConfigReferenceCommand.self,
        ],
        defaultSubcommand: RunCommand.self
    )

    static func main() async {
        // One malloc arena for all threads: glibc otherwise gives threads arenas of their own,
        // and the buffers of a page freed on another thread than the one that allocated them
        // stay resident (measured: peak RSS of a 10,000-alert backfill 56 MB, 46 MB with one
        // arena, CPU the same).
        _ = mallopt(M_ARENA_MAX, 1)
        // A page's buffers (the inflated body, the log's write and read buffers, a sink's
        // batch: megabytes each) come from the heap and are reused page after page, instead of
        // being mapped fresh and faulted in each time (half the page faults of a backfill, 5 %
        // of its CPU). Free memory goes back to the system when the pipeline is idle
        // (`malloc_trim`, in Pipeline), not after every free.
        _ = mallopt(M_MMAP_THRESHOLD, 32 << 20)
        _ = mallopt(M_TRIM_THRESHOLD, 64 << 20)
        await main(nil)
    }
}

/// Options every command shares.
struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The configuration file.", valueName: "path"))
    var config: String = ConfigurationLoader.defaultPath
}

/// Exit codes (README, Command line): 0 a clean stop, 78 (EX_CONFIG) a configuration that cannot run.
enum ExitStatus {
    /// EX_CONFIG: invalid configuration, missing or over-permissive secret file.
    static let configuration = ExitCode(78)
}
