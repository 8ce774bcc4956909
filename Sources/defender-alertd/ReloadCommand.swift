import ArgumentParser
import Foundation

/// `defender-alertd reload --pid PID`: what the unit's `ExecReload=` runs. It sends SIGHUP to
/// the daemon, so the unit does not depend on a `kill` binary being installed (minimal
/// systems have none); the daemon itself then tells systemd `RELOADING=1` ... `READY=1`.
struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Ask a running daemon to reload its configuration (sends SIGHUP to --pid)."
    )

    @Option(help: "The daemon's process id ($MAINPID in the unit).") var pid: Int32

    func run() throws {
        guard pid > 1 else { throw ValidationError("--pid must name the daemon's process, not \(pid)") }
        guard kill(pid, SIGHUP) == 0 else {
            throw ValidationError("cannot signal process \(pid): \(String(cString: strerror(errno)))")
        }
    }
}
