import DefenderSimulator
import OrderedJSON
import Testing
import Timekeeping

@Suite("OData $filter")
struct ODataFilterTests {
    let alert = JSONValue.object([
        ("id", .string("da1_2")), ("incidentId", .int(42)), ("investigationId", .null), ("assignedTo", .null),
        ("severity", .string("High")), ("status", .string("New")), ("category", .string("Malware")),
        ("detectionSource", .string("WindowsDefenderAv")),
        ("alertCreationTime", .string("2025-03-14T09:00:00Z")), ("lastUpdateTime", .string("2025-03-14T09:14:05.46Z")),
        ("lastEventTime", .string("2025-03-14T08:59:59.1234567Z")),
    ])

    func matches(_ text: String) throws -> Bool {
        try ODataFilter.parse(text).matches(alert)
    }

    @Test(arguments: [
        ("lastUpdateTime ge 2025-03-14T09:14:05.46Z", true),
        ("lastUpdateTime ge 2025-03-14T09:14:05.4600001Z", false),
        ("lastUpdateTime gt 2025-03-14T09:14:05.4599999Z", true),
        ("lastUpdateTime lt 2025-03-14T09:14:06Z", true),
        ("lastUpdateTime le 2025-03-14T09:14:05Z", false),
        ("lastUpdateTime eq 2025-03-14T09:14:05.4600000Z", true),
        ("lastUpdateTime ne 2025-03-14T09:14:05.46Z", false),
        ("lastEventTime lt 2025-03-14T09:00:00.0Z", true),
        ("alertCreationTime ge 2025-03-14T09:00:00Z and alertCreationTime lt 2025-03-14T10:00:00Z", true),
        ("severity eq 'High' and status eq 'New'", true),
        ("severity eq 'Low' or status eq 'New'", true),
        ("(severity eq 'Low' or severity eq 'Medium') and status eq 'New'", false),
        ("not (severity eq 'Low')", true),
        ("category eq 'Malware' and detectionSource eq 'WindowsDefenderAv'", true),
        ("incidentId eq 42", true),
        ("incidentId gt 42", false),
        ("investigationId eq null", true),
        ("assignedTo ne null", false),
        ("assignedTo eq 'x'", false),
        ("id eq 'da1_2'", true),
        ("STATUS EQ 'New'", true),
        ("status eq 'it''s'", false),
    ])
    func evaluates(text: String, expected: Bool) throws {
        #expect(try matches(text) == expected, "\(text)")
    }

    @Test(arguments: [
        "2025-03-14T09:14:05Z", "2025-03-14T09:14:05.46Z", "2025-03-14T09:14:05.460Z",
        "2025-03-14T09:14:05.4600Z", "2025-03-14T09:14:05.46000Z", "2025-03-14T09:14:05.460000Z", "2025-03-14T09:14:05.4600000Z",
    ])
    func acceptsZeroToSevenFractionDigits(literal: String) throws {
        let filter = try ODataFilter.parse("lastUpdateTime ge \(literal)")
        // Every spelling is the same instant: .46 seconds past, or none for the first.
        let expected = try #require(Timestamp(parsing: literal == "2025-03-14T09:14:05Z" ? literal : "2025-03-14T09:14:05.46Z"))
        #expect(filter == .comparison(property: "lastUpdateTime", op: .ge, value: .dateTime(expected)), "\(filter)")
    }

    @Test func timestampsRoundTrip() throws {
        for text in ["2025-03-14T09:14:05Z", "2025-03-14T09:14:05.46Z", "1999-12-31T23:59:59.9999999Z", "2024-02-29T00:00:00.1Z"] {
            #expect(Timestamp(parsing: text)?.description == text)
        }
        #expect(Timestamp(parsing: "2025-02-30T00:00:00Z") == nil)
        #expect(Timestamp(parsing: "2025-03-14 09:14:05Z") == nil)
        let t = Timestamp(parsing: "2025-03-14T09:14:05.4612345Z")!
        #expect(t.writtenWith(2).description == "2025-03-14T09:14:05.46Z")
        #expect(t.writtenWith(0).description == "2025-03-14T09:14:05Z")
    }
}
