import Logging
import Systemd
import TestSupport
import Testing

@Suite("Health-gated watchdog")
struct WatchdogServiceTests {
    let time = ManualClock()
    let notifier = RecordingNotifier()
    let records = LogRecords()

    func makeWatchdog(settings: WatchdogSettings? = WatchdogSettings(timeout: .seconds(60))) -> (WatchdogService, HealthMonitor, StatusLine) {
        let monitor = HealthMonitor(clock: time.clock)
        let status = StatusLine(notifier: notifier)
        let watchdog = WatchdogService(
            settings: settings, monitor: monitor, notifier: notifier, status: status,
            clock: time.clock, logger: records.logger()
        )
        return (watchdog, monitor, status)
    }

    @Test func pingsWhileEveryComponentReportsProgress() {
        let (watchdog, monitor, _) = makeWatchdog()
        let poller = monitor.register("poller", allowance: .seconds(90))
        let sink = monitor.register("sink:archive", allowance: .seconds(90))
        for _ in 0..<5 {
            time.advance(by: .seconds(30))
            poller.progress()
            sink.progress()
            #expect(watchdog.check())
        }
        #expect(notifier.watchdogPings == 5)
        #expect(records.at(.critical).isEmpty)
    }

    @Test func stopsPingingWhenAComponentStallsAndSaysWhich() {
        let (watchdog, monitor, status) = makeWatchdog()
        let poller = monitor.register("poller", allowance: .seconds(90))
        let sink = monitor.register("sink:archive", allowance: .seconds(90))
        #expect(watchdog.check())

        // The sink keeps reporting (backing off is alive); the poller hangs.
        for _ in 0..<4 {
            time.advance(by: .seconds(30))
            sink.progress()
            watchdog.check()
        }
        #expect(notifier.watchdogPings == 4)  // first check + 30s + 60s + 90s (exactly at the allowance)
        #expect(!watchdog.check())
        #expect(notifier.watchdogPings == 4)
        #expect(status.current.contains("STALLED: poller"))
        #expect(!status.current.contains("sink:archive"))
        let critical = records.at(.critical)
        #expect(critical.count == 1)  // logged once per change, not on every check
        #expect(critical.first?.message.contains("poller") == true)

        // Recovery: pings resume and STATUS= no longer names it.
        poller.progress()
        #expect(watchdog.check())
        #expect(notifier.watchdogPings == 5)
        #expect(!status.current.contains("STALLED"))
        #expect(records.at(.notice).contains { $0.message.contains("resumed") })
    }

    @Test func deregisteredComponentNoLongerCounts() {
        let (watchdog, monitor, _) = makeWatchdog()
        _ = monitor.register("sink:old", allowance: .seconds(10))
        time.advance(by: .seconds(11))
        #expect(!watchdog.check())
        monitor.deregister("sink:old")
        #expect(watchdog.check())
    }

    @Test func withoutWatchdogItStillReportsStalls() {
        let (watchdog, monitor, status) = makeWatchdog(settings: nil)
        _ = monitor.register("poller", allowance: .seconds(10))
        #expect(watchdog.check())
        time.advance(by: .seconds(11))
        #expect(!watchdog.check())
        #expect(notifier.watchdogPings == 0)
        #expect(status.current.contains("STALLED: poller"))
    }

    @Test func pingIntervalIsHalfTheTimeout() {
        #expect(WatchdogSettings(timeout: .seconds(60)).pingInterval == .seconds(30))
    }
}

@Suite("STATUS= line")
struct StatusLineTests {
    @Test func partsKeepTheirOrderAndOnlyChangesAreSent() {
        let notifier = RecordingNotifier()
        let status = StatusLine(notifier: notifier)
        status.set("config", "1 tenant")
        status.set("health", "STALLED: poller")
        status.set("config", "2 tenants")
        status.set("config", "2 tenants")
        #expect(status.current == "2 tenants; STALLED: poller")
        status.set("health", nil)
        #expect(status.current == "2 tenants")
        #expect(
            notifier.sent == [
                .status("1 tenant"), .status("1 tenant; STALLED: poller"),
                .status("2 tenants; STALLED: poller"), .status("2 tenants"),
            ])
    }

    @Test func statusIsAlwaysOneLine() {
        #expect(NotifyMessage.status("a\nb\r\nc").assignment == "STATUS=a b c")
    }
}
