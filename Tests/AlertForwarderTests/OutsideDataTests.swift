import DefenderAPI
import Foundation
import OrderedJSON
import Testing
import Timekeeping

@testable import AlertForwarder

/// Values from outside (an API's alert, a `Date:` header, a stored schedule) that once could
/// stop the process: each is read, clamped or refused, never trapped on (issue 23, item 1).
@Suite("Outside data never traps")
struct OutsideDataTests {
    @Test(arguments: ["null", "1", "\"x\"", "[]", "true"])
    func graphEvidenceThatIsNoObjectIsSkipped(element: String) {
        // A Graph alert (it has lastUpdateDateTime) with no device name reads its evidence: an
        // element that is not an object has no members, and indexing them crashed every sink.
        let payload =
            ##"{"id":"a","title":"t","lastUpdateDateTime":"2025-01-01T00:00:00Z","evidence":[\##(element),{"@odata.type":"#microsoft.graph.security.deviceEvidence","deviceDnsName":"ws-1"}]}"##
        let headline = AlertHeadline(payload: Array(payload.utf8))
        #expect(headline.title == "t")
        #expect(headline.host == "ws-1")
    }

    @Test func theLagOfAnAlertFromYearOneOrOfADateFromFarAheadIsNoTrap() throws {
        let ancient = try Alert(json: #"{"id":"a","lastUpdateTime":"0001-01-01T00:00:00Z"}"#)
        let now = try #require(Timestamp(parsing: "2026-01-01T00:00:00Z"))
        #expect(TenantPoller.lag(of: ancient, at: now) > .seconds(2024 * 365 * 86_400))
        let recent = try Alert(json: #"{"id":"b","lastUpdateTime":"2026-01-01T00:00:00Z"}"#)
        let future = try #require(Timestamp(parsing: "9999-12-31T23:59:59Z"))
        #expect(TenantPoller.lag(of: recent, at: future) > .seconds(7900 * 365 * 86_400))
        #expect(TenantPoller.lag(of: recent, at: Timestamp(ticks: .min)) == .zero)
    }

    @Test func timestampsFromDamagedStateAreClampedNotTrapped() {
        for date in [
            Date(timeIntervalSince1970: .infinity), Date(timeIntervalSince1970: -.infinity), Date(timeIntervalSince1970: .nan),
            Date(timeIntervalSince1970: 1e300),
        ] {
            let stamp = Timestamp(date)
            #expect(Timestamp.representable.contains(stamp.ticks))
            #expect(!stamp.description.isEmpty)
        }
        for ticks in [Int64.max, Int64.min] {
            let stamp = Timestamp(ticks: ticks)
            #expect(Timestamp.representable.contains(stamp.ticks))
            _ = stamp.writtenWith(0).description
            #expect(stamp.adding(ticks: ticks).ticks == stamp.ticks || Timestamp.representable.contains(stamp.adding(ticks: ticks).ticks))
            #expect(Timestamp.representable.contains(stamp.adding(seconds: .infinity).ticks))
        }
    }

    @Test func aHECTimeBefore1970IsJSON() throws {
        let payload = #"{"id":"da1","title":"t","lastUpdateTime":"1969-12-31T23:59:58.5Z"}"#
        let record = OutboxRecord(
            id: 1, sink: "siem", tenant: "contoso", alertID: "da1", event: "created",
            receivedAt: "2026-11-25T19:52:03Z", payload: payload)
        let settings = HTTPSinkSettings(url: "http://127.0.0.1:9/x", format: .splunkHEC)
        let entry = try #require(HTTPRequestBody.entry(for: record, settings: settings)).bytes
        let event = try JSONValue(parsing: Data(entry))
        #expect(event["time"] == .number("-1.500"), "\(String(decoding: entry, as: UTF8.self))")
    }
}
