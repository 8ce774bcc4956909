import Foundation
import Systemd
import TestSupport
import Testing
import Timekeeping

/// These tests set process-wide environment variables that libsystemd reads
/// (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`), so they run one at a time.
@Suite("sd_notify on a real socket", .serialized)
struct NotifierTests {
    func withEnvironment<R>(_ values: [String: String], _ body: () throws -> R) rethrows -> R {
        let previous = values.keys.map { ($0, getenv($0).map { String(cString: $0) }) }
        for (key, value) in values { setenv(key, value, 1) }
        defer {
            for (key, value) in previous {
                if let value { setenv(key, value, 1) } else { unsetenv(key) }
            }
        }
        return try body()
    }

    @Test(arguments: [false, true])
    func everyMessageReachesTheSocket(abstract: Bool) {
        let socket = NotifySocket(abstract: abstract)
        withEnvironment(["NOTIFY_SOCKET": socket.address]) {
            let notifier = SystemdNotifier()
            #expect(notifier.isEnabled)
            #expect(notifier.send(.ready, .status("2 tenants; all good")))
            #expect(socket.receive(timeout: .seconds(5)) == "READY=1\nSTATUS=2 tenants; all good")
            notifier.send(.reloading(monotonicMicroseconds: 123_456_789))
            #expect(socket.receive(timeout: .seconds(5)) == "RELOADING=1\nMONOTONIC_USEC=123456789")
            notifier.send(.watchdog)
            #expect(socket.receive(timeout: .seconds(5)) == "WATCHDOG=1")
            notifier.send(.watchdogTrigger)
            #expect(socket.receive(timeout: .seconds(5)) == "WATCHDOG=trigger")
            notifier.send(.extendTimeout(.seconds(90)))
            #expect(socket.receive(timeout: .seconds(5)) == "EXTEND_TIMEOUT_USEC=90000000")
            notifier.send(.errno(5))
            #expect(socket.receive(timeout: .seconds(5)) == "ERRNO=5")
            notifier.send(.stopping)
            #expect(socket.receive(timeout: .seconds(5)) == "STOPPING=1")
            // The environment is left as it was: later sends (and children) still see it.
            #expect(getenv("NOTIFY_SOCKET").map { String(cString: $0) } == socket.address)
        }
    }

    @Test func withoutNotifySocketSendingIsANoOp() {
        let notifier = SystemdNotifier(environment: [:])
        #expect(!notifier.isEnabled)
        #expect(notifier.send(.ready))
    }

    @Test func watchdogSettingsComeFromTheEnvironment() {
        withEnvironment(["WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "\(getpid())"]) {
            #expect(WatchdogSettings.fromEnvironment() == WatchdogSettings(timeout: .seconds(20)))
        }
        // Meant for another process: not ours to ping.
        withEnvironment(["WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"]) {
            #expect(WatchdogSettings.fromEnvironment() == nil)
        }
        withEnvironment(["WATCHDOG_USEC": "0", "WATCHDOG_PID": "\(getpid())"]) {
            #expect(WatchdogSettings.fromEnvironment() == nil)
        }
    }

    @Test func monotonicMicrosecondsMatchClockMonotonic() {
        let before = MonotonicClock.systemMonotonicMicroseconds()
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        let reference = UInt64(spec.tv_sec) * 1_000_000 + UInt64(spec.tv_nsec) / 1_000
        let after = MonotonicClock.systemMonotonicMicroseconds()
        #expect(before <= reference && reference <= after)
    }
}

@Suite("Log target detection")
struct LogTargetTests {
    func stderrIdentity() -> String {
        var info = stat()
        fstat(STDERR_FILENO, &info)
        return "\(info.st_dev):\(info.st_ino)"
    }

    @Test func journalWhenStderrIsTheJournalStream() {
        #expect(LogTarget.auto.resolved(environment: ["JOURNAL_STREAM": stderrIdentity()]) == .journal)
    }

    @Test func stderrWhenTheStreamWasRedirected() {
        #expect(LogTarget.auto.resolved(environment: ["JOURNAL_STREAM": "1:2"]) == .stderr)
        #expect(LogTarget.auto.resolved(environment: ["JOURNAL_STREAM": "garbage"]) == .stderr)
        #expect(LogTarget.auto.resolved(environment: [:]) == .stderr)
    }

    @Test func explicitTargetsWin() {
        #expect(LogTarget.journal.resolved(environment: [:]) == .journal)
        #expect(LogTarget.stderr.resolved(environment: ["JOURNAL_STREAM": stderrIdentity()]) == .stderr)
    }
}
