@testable import AlertForwarder
import Testing
import TestSupport

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
