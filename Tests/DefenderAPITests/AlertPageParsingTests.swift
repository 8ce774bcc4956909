import Foundation
import Testing

@testable import DefenderAPI
@testable import OrderedJSON

/// Reading a page of alerts at the byte level: the whole body is validated, each alert keeps
/// its original bytes, and no malformed or hostile body yields a partial page or a crash.
@Suite("Alert pages: byte-level scanning")
struct AlertPageParsingTests {
    func response(_ body: String, contentType: String = "application/json; odata.metadata=minimal") -> HTTPExchangeResponse {
        HTTPExchangeResponse(status: 200, headers: [("Content-Type", contentType)], body: Data(body.utf8))
    }

    /// Every element as written: odd whitespace, escapes a serializer would normalise (`\/`,
    /// `\u00e9`, a surrogate pair), number text (`1E+2`, `-0.0`, `1.50`, 20 digits), nulls,
    /// unknown members, non-ASCII, nested evidence, and `id` written with an escape.
    static let elements = [
        #"{"id":"da1","lastUpdateTime":"2026-11-25T10:00:00.1234567Z","severity":"High","title":"caf\u00e9 \/ \"x\"","futureField":{"score":1.50,"big":12345678901234567890,"exp":1E+2,"neg":-0.0,"n":null}}"#,
        "{ \"id\" : \"da2\" ,\n  \"lastUpdateTime\":\"2026-11-25T10:00:01Z\", \"title\": \"ünïcødé ✓ 😀 \\ud83d\\ude00\", \"incidentId\": 48219,\n \"evidence\": [ {\"entityType\":\"File\",\"sha1\":null}, [], {} ] }",
        #"{"lastUpdateTime":"2026-11-25T10:00:02Z","id":"d\u0061\"3","computerDnsName":"ws-1","incidentId":"77"}"#,
    ]

    @Test func eachAlertKeepsItsBytesAndTheFieldsAreDecoded() throws {
        let body =
            "{\"@odata.context\":\"https://api.security.microsoft.com/api/$metadata#Alerts\",\n\"value\": [\n  "
            + Self.elements.joined(separator: " ,\n  ") + "\n] }\n"
        let page = try AlertsClient.parsePage(response(body))
        #expect(page.rejected.isEmpty)
        #expect(page.alerts.map(\.json) == Self.elements)
        #expect(page.alerts.map(\.id) == ["da1", "da2", "da\"3"])
        #expect(page.alerts[0].title == "café / \"x\"")
        #expect(page.alerts[0].severity == "High")
        #expect(page.alerts[0].lastUpdateTime.description == "2026-11-25T10:00:00.1234567Z")
        #expect(page.alerts[1].title == "ünïcødé ✓ 😀 😀")
        #expect(page.alerts[1].incidentId == "48219")
        #expect(page.alerts[2].incidentId == "77")
        #expect(page.alerts[2].computerDnsName == "ws-1")
        // What the generic parser understands of each element is the same.
        for (alert, element) in zip(page.alerts, Self.elements) {
            #expect(try JSONValue(parsing: alert.json) == JSONValue(parsing: element))
        }
    }

    @Test func elementsWithoutIdOrTimestampAreRejectedNotDropped() throws {
        let page = try AlertsClient.parsePage(
            response(
                #"{"value":[{"id":"a","lastUpdateTime":"2026-11-25T10:00:00Z"},{"lastUpdateTime":"2026-11-25T10:00:00Z"},{"id":"b","lastUpdateTime":"yesterday"},[1],"x",{"id":7,"lastUpdateTime":"2026-11-25T10:00:00Z"}]}"#
            ))
        #expect(page.alerts.map(\.id) == ["a"])
        #expect(
            page.rejected.map(\.json) == [
                #"{"lastUpdateTime":"2026-11-25T10:00:00Z"}"#, #"{"id":"b","lastUpdateTime":"yesterday"}"#, "[1]", #""x""#,
                #"{"id":7,"lastUpdateTime":"2026-11-25T10:00:00Z"}"#,
            ])
    }

    @Test(
        "a malformed body is a typed error, never a partial page",
        arguments: [
            #"{"value":[{"id":"a","lastUpdateTime":"2026-11-25T10:00:00Z"},{"id":"b","lastUp"#,  // truncated
            #"{"value":[{"id":"a","lastUpdateTime":"2026-11-25T10:00:00Z"},{"id":"b\"}]}"#,  // a string that never ends
            #"{"value":[{"id":"a","lastUpdateTime":"2026-11-25T10:00:00Z"},{"id":"b","x":[[[1]]}"#,  // brackets that never close
            #"{"value":[{"id":"a","lastUpdateTime":"2026-11-25T10:00:00Z"}]"#,  // missing }
            #"{"value":[{"id":"a","lastUpdateTime":"2026-11-25T10:00:00Z"},]}"#,  // trailing comma
            #"{"value":[{"id":"a","lastUpdateTime":"2026-11-25T10:00:00Z"}]} x"#,  // data after the document
            #"{"value":{"id":"a"}}"#,  // value is not an array
            #"{"values":[]}"#,  // no value at all
            "[]", "", "   ", "null",
        ])
    func malformedBodiesAreErrors(_ body: String) {
        #expect(throws: DefenderAPIError.self) { try AlertsClient.parsePage(response(body)) }
    }

    /// The bytes of an element that is not valid JSON in an otherwise valid page.
    static let badElements: [[UInt8]] =
        [
            #"{"id":"a","n":01}"#, #"{"id":"a","n":1.}"#, #"{"id":"a","n":-}"#, #"{"id":"\q"}"#, #"{"id":"\u12"}"#,
            "{\"id\":\"a\tb\"}",  // raw control character
            #"{"id":tru}"#, #"{"id" "a"}"#, #"{'id':"a"}"#, "tru", "-",
            #"{"id":"x","deep":"# + String(repeating: "[", count: 600) + String(repeating: "]", count: 600) + "}",
        ].map { Array($0.utf8) }
        + [[0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x82], [0x80], [0xF4, 0x90, 0x80, 0x80]].map {
            Array(#"{"id":"a"#.utf8) + $0 + Array(#"","lastUpdateTime":"2026-11-25T10:00:00Z"}"#.utf8)
        }

    @Test("an element that is not valid JSON is rejected with its bytes; the rest of the page is read", arguments: badElements)
    func aBadElementDoesNotStallThePage(_ element: [UInt8]) throws {
        let body =
            Data(#"{"value":[{"id":"before","lastUpdateTime":"2026-11-25T10:00:00Z"}, "#.utf8) + Data(element)
            + Data(#" ,{"id":"after","lastUpdateTime":"2026-11-25T10:00:01Z"}]}"#.utf8)
        let page = try AlertsClient.parsePage(HTTPExchangeResponse(status: 200, headers: [("Content-Type", "application/json")], body: body))
        #expect(page.alerts.map(\.id) == ["before", "after"])
        #expect(page.rejected.map(\.bytes) == [Data(element)], "exactly the element's bytes")
        #expect(page.rejected.first?.reason.contains("not valid JSON") == true, "\(page.rejected)")
    }

    @Test func aLoneSurrogateIsLegalJSONAndPassesThroughAsItCame() throws {
        // RFC 8259's grammar allows any \uXXXX; a lone surrogate is no Unicode scalar, so the
        // decoded title shows U+FFFD, while the alert's bytes keep the escape.
        let element = #"{"id":"da1","lastUpdateTime":"2026-11-25T10:00:00Z","title":"bad \udc00 and \ud800x and \ud83d\ude00"}"#
        let page = try AlertsClient.parsePage(response(#"{"value":["# + element + "]}"))
        #expect(page.rejected.isEmpty)
        #expect(page.alerts.map(\.json) == [element])
        #expect(page.alerts[0].title == "bad \u{FFFD} and \u{FFFD}x and 😀")
        #expect(try JSONValue(parsing: element)["title"]?.stringValue == "bad \u{FFFD} and \u{FFFD}x and 😀")
    }

    @Test func eightBytesAtATimeFindTheFirstByteThatMatters() {
        // Every byte value at every place in a word of otherwise plain text, alone and followed
        // by a second byte that matters (whose flag a borrow could disturb).
        func matters(_ byte: UInt8) -> Bool { byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 }
        func word(_ bytes: [Int: UInt8]) -> UInt64 {
            var word = UInt64(0x6161_6161_6161_6161)  // "aaaaaaaa"
            for (place, byte) in bytes { word = word & ~(UInt64(0xFF) << (8 * place)) | UInt64(byte) << (8 * place) }
            return word
        }
        func first(_ word: UInt64) -> Int? {
            let flags = JSONScanner.notPlain(word)
            return flags == 0 ? nil : flags.trailingZeroBitCount / 8
        }
        for value in 0...255 {
            let byte = UInt8(value)
            for place in 0..<8 {
                #expect(first(word([place: byte])) == (matters(byte) ? place : nil), "byte \(value) at \(place)")
                for later in place + 1..<8 {
                    for second: UInt8 in [0x00, 0x1F, 0x22, 0x5C, 0x80, 0xFF] {
                        #expect(
                            first(word([place: byte, later: second])) == (matters(byte) ? place : later),
                            "byte \(value) at \(place), \(second) at \(later)")
                    }
                }
            }
        }
    }

    @Test func longStringsAreCheckedAtEveryAlignment() throws {
        for length in 0..<24 {
            let text = String(repeating: "x", count: length)
            let good = try AlertsClient.parsePage(response(#"{"value":[{"id":""# + text + #"\"é","lastUpdateTime":"2026-11-25T10:00:00Z"}]}"#))
            #expect(good.alerts.first?.id == text + "\"é")
            // Found wherever it is: the element is rejected (the page itself is read).
            for bad in ["\t", "\u{01}", #"\q"#] {
                let page = try AlertsClient.parsePage(
                    response(#"{"value":[{"id":""# + text + bad + text + #"","lastUpdateTime":"2026-11-25T10:00:00Z"}]}"#))
                #expect(page.alerts.isEmpty && page.rejected.count == 1, "\(length) \(bad.debugDescription)")
            }
            let invalid =
                Data(#"{"value":[{"id":""#.utf8) + Data(text.utf8) + Data([0xC0, 0x80]) + Data(text.utf8)
                + Data(#"","lastUpdateTime":"2026-11-25T10:00:00Z"}]}"#.utf8)
            let page = try AlertsClient.parsePage(HTTPExchangeResponse(status: 200, headers: [("Content-Type", "application/json")], body: invalid))
            #expect(page.alerts.isEmpty && page.rejected.count == 1, "\(length) invalid UTF-8")
            // Unterminated, the string running to the end of the body.
            #expect(throws: DefenderAPIError.self) { try AlertsClient.parsePage(response(#"{"value":[{"id":""# + text)) }
        }
    }

    @Test func deepNestingIsAnErrorNotACrash() throws {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: DefenderAPIError.self) { try AlertsClient.parsePage(response(deep)) }
        // Inside an element, the element is rejected (its end is found by counting brackets,
        // without recursion) and the page goes on.
        for element in [deep, #"{"id":"a","lastUpdateTime":"2026-11-25T10:00:00Z","e":"# + deep + "}"] {
            let page = try AlertsClient.parsePage(response(#"{"value":["# + element + #",{"id":"b","lastUpdateTime":"2026-11-25T10:00:00Z"}]}"#))
            #expect(page.rejected.map(\.json) == [element])
            #expect(page.alerts.map(\.id) == ["b"])
        }
        // The generic parser, used for error bodies and by the simulator, holds too.
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: deep) }
        // Nesting within the limit is fine.
        let nested = String(repeating: "[", count: 500) + String(repeating: "]", count: 500)
        let page = try AlertsClient.parsePage(response(#"{"value":[{"id":"a","lastUpdateTime":"2026-11-25T10:00:00Z","e":"# + nested + "}]}"))
        #expect(page.alerts.count == 1)
    }

    @Test func theScannerAgreesWithTheParserOnTheFixtures() throws {
        let fixtures = URL(fileURLWithPath: repositoryRootPath + "/Tests/Fixtures")
        for name in try FileManager.default.contentsOfDirectory(atPath: fixtures.path) where name.hasSuffix(".json") {
            var bytes = [UInt8](try Data(contentsOf: fixtures.appendingPathComponent(name)))
            let value = try JSONValue(parsing: Data(bytes))
            guard case .object(let members) = value else { continue }
            let ranges = try bytes.withUnsafeMutableBufferPointer { buffer in
                var scanner = JSONScanner(UnsafeBufferPointer(buffer))
                return try scanner.members(members.map(\.0))
            }
            for ((name, member), range) in zip(members, ranges) {
                let text = try #require(range.map { String(decoding: bytes[$0], as: UTF8.self) }, "\(name)")
                #expect(try JSONValue(parsing: text) == member, "\(name)")
            }
        }
    }

    @Test func wrongContentTypeIsAnError() {
        #expect(throws: DefenderAPIError.self) { try AlertsClient.parsePage(response(#"{"value":[]}"#, contentType: "text/html")) }
    }
}
