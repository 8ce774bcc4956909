import TestSupport
import Testing

@testable import AlertForwarder

/// `STATUS=`: a poll under way is shown beside the last one that ended, never instead of it.
@Suite("STATUS= line")
struct PipelineStatusTests {
    @Test func aPollUnderWayIsShownBesideTheLastOneThatEnded() {
        let time = ManualClock()
        let status = PipelineStatus(clock: time.clock)
        status.record(tenant: "contoso", .polling(alertsSoFar: 1200, window: "≥ 2026-11-26T15:00:00Z"))
        #expect(status.line == "contoso: polling (1200 alerts so far, window ≥ 2026-11-26T15:00:00Z); outbox 0")
        status.record(tenant: "contoso", .succeeded(newAlerts: 5000))
        time.advance(by: .seconds(3))
        // The next poll runs; the last result stays readable ("ok"), with its age.
        status.record(tenant: "contoso", .polling(alertsSoFar: 0, window: "≥ 2026-11-26T15:10:00Z"))
        #expect(status.line == "contoso: ok 3s ago +5000, polling (0 alerts so far, window ≥ 2026-11-26T15:10:00Z); outbox 0")
        // A failure ends the poll: nothing of it is left "polling".
        status.record(tenant: "contoso", .failed("HTTP 503"))
        #expect(status.line == "contoso: FAILING 0s ago (HTTP 503); outbox 0")
        // A long backfill does not hide that the poll before it failed.
        status.record(tenant: "contoso", .polling(alertsSoFar: 40, window: "≥ x"))
        #expect(status.line.hasPrefix("contoso: FAILING 0s ago (HTTP 503), polling (40 alerts so far"))
    }
}

/// Thousands of tenants: `STATUS=` counts them, and names the ones that need a look.
@Suite("STATUS= line of many tenants")
struct ManyTenantsStatusTests {
    @Test func pastTenStreamsTheLineCountsAndNamesTheFailingAndPausedOnes() {
        let time = ManualClock()
        let status = PipelineStatus(clock: time.clock)
        let names = (0..<2000).map { "t\($0)" }
        status.retain(tenants: Set(names), sinks: ["archive"])
        for name in names.prefix(1990) { status.record(tenant: name, .succeeded(newAlerts: 0)) }
        status.record(tenant: "t3", .polling(alertsSoFar: 10, window: "≥ x"))
        for name in ["t1990", "t1991", "t1992", "t1993", "t1994", "t1995", "t1996"] { status.record(tenant: name, .failed("HTTP 503")) }
        status.record(tenant: "t1997", .paused(outbox: 90_000))
        #expect(
            status.line == "2000 streams: 1990 ok, 1 polling, 2 not polled yet, 1 PAUSED (t1997), "
                + "7 FAILING (t1990, t1991, t1992, t1993, t1994, ...); outbox 0")
    }

    @Test func tenStreamsAreStillNamedOneByOne() {
        let status = PipelineStatus(clock: ManualClock().clock)
        let names = (0..<10).map { "t\($0)" }
        status.retain(tenants: Set(names), sinks: [])
        for name in names { status.record(tenant: name, .succeeded(newAlerts: 1)) }
        #expect(status.line.hasPrefix("t0: ok 0s ago +1; t1: ok 0s ago +1;"))
    }
}
