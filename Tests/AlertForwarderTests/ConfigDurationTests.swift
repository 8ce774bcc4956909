import Testing
import Timekeeping

@testable import AlertForwarder

@Suite("Duration strings")
struct ConfigDurationTests {
    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)), ("30s", .seconds(30)), ("5m", .seconds(300)),
        ("2h", .seconds(7200)), ("1d", .seconds(86400)), ("1h30m", .seconds(5400)), ("0s", .zero), ("0", .zero),
    ])
    func parses(text: String, expected: Duration) {
        #expect(ConfigDuration.parse(text) == expected)
    }

    @Test(arguments: ["", "5", "00", "0m0", "s", "5 s", "-5s", "5sec", "1.5h", "5S", "1h 30m", "99999999999999s"])
    func rejects(text: String) {
        #expect(ConfigDuration.parse(text) == nil)
    }

    @Test func absurdlyLongDurationsAreRefusedNotATrap() {
        // Thousands of 12-digit components would overflow Duration's arithmetic.
        #expect(ConfigDuration.parse(String(repeating: "999999999999d", count: 3000)) == nil)
        #expect(ConfigDuration.parse("1001000d") == nil)
        #expect(ConfigDuration.parse("365000d") == .seconds(365_000 * 86400))
    }

    @Test func formatsCompactly() {
        #expect(ConfigDuration.format(.seconds(90)) == "1m30s")
        #expect(ConfigDuration.format(.milliseconds(1500)) == "1s500ms")
        #expect(ConfigDuration.format(.zero) == "0s")
        #expect(ConfigDuration.format(.seconds(86400 + 3600)) == "1d1h")
    }
}
