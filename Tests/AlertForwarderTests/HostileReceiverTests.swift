import DefenderAPI
import Foundation
import OrderedJSON
import Synchronization
import Testing

@testable import AlertForwarder

/// Receivers that answer what no documentation promises: the HTTP sink reads each answer as
/// outside data, never crashes on it, never leaks a credential through it, and tells a
/// misconfiguration (a person must fix it) from a refused alert (a dead letter).
@Suite("HTTP sink: hostile receivers")
struct HostileReceiverTests {
    /// Answers every request with the next scripted response (the last one again when they run
    /// out), and keeps what was sent.
    final class ScriptedReceiver: HTTPTransport {
        private let state: Mutex<(answers: [HTTPExchangeResponse], requests: [HTTPExchangeRequest])>

        init(_ answers: [HTTPExchangeResponse]) {
            state = Mutex((answers, []))
        }

        var requests: [HTTPExchangeRequest] { state.withLock { $0.requests } }

        func send(_ request: HTTPExchangeRequest, deadline: Duration) async throws(TransportError) -> HTTPExchangeResponse {
            state.withLock { state in
                state.requests.append(request)
                return state.answers.count > 1 ? state.answers.removeFirst() : state.answers[0]
            }
        }
    }

    static func sink(
        _ format: HTTPBodyFormat, _ answers: [HTTPExchangeResponse], token: String = "hec-token-1234",
        authorization: HTTPAuthorization? = nil, waits: Waits = Waits()
    ) -> (HTTPSink, ScriptedReceiver) {
        let receiver = ScriptedReceiver(answers)
        let settings = HTTPSinkSettings(url: "http://127.0.0.1:9/in", format: format, authorization: authorization, token: Secret(token))
        return (HTTPSink(settings: settings, transport: receiver, sleep: { waits.record($0) }), receiver)
    }

    /// The sink's waits, kept instead of slept.
    final class Waits: Sendable {
        private let waits = Mutex<[Duration]>([])
        var all: [Duration] { waits.withLock { $0 } }
        func record(_ wait: Duration) { waits.withLock { $0.append(wait) } }
    }

    static func bulkAnswer(_ statuses: [Int]) -> HTTPExchangeResponse {
        let items = statuses.map { #"{"index":{"_index":"defender-alerts","status":\#($0)}}"# }
        return json(200, #"{"errors":\#(statuses.contains { $0 >= 300 }),"items":[\#(items.joined(separator: ","))]}"#)
    }

    /// The alert ids of a bulk request's documents.
    static func bulkIDs(_ request: HTTPExchangeRequest) -> [String] {
        let lines = (request.bytes ?? []).split(separator: UInt8(ascii: "\n"))
        return stride(from: 1, to: lines.count, by: 2).compactMap { (try? JSONValue(parsing: Data(lines[$0])))?["id"]?.stringValue }
    }

    @Test func onlyTheItemsElasticsearchWasTooBusyForAreSentAgain() async throws {
        let waits = Waits()
        let (sink, receiver) = Self.sink(.elasticsearchBulk, [Self.bulkAnswer([201, 429, 201, 503]), Self.bulkAnswer([201, 201])], waits: waits)
        let rejected = try await sink.send((1...4).map { HTTPSinkTests.record($0) })
        #expect(rejected.isEmpty)
        #expect(receiver.requests.map(Self.bulkIDs) == [["da1", "da2", "da3", "da4"], ["da2", "da4"]])
        #expect(waits.all == [.seconds(1)])
    }

    @Test func itemsStillBusyFailTheDeliveryAndWhatWasIndexedAtTheFrontIsConfirmed() async throws {
        let waits = Waits()
        let (sink, receiver) = Self.sink(.elasticsearchBulk, [Self.bulkAnswer([201, 400, 429, 201]), Self.bulkAnswer([429])], waits: waits)
        do {
            _ = try await sink.send((1...4).map { HTTPSinkTests.record($0) })
            Issue.record("a delivery with items still busy succeeded")
        } catch {
            // da1 indexed, da2 refused for good (a dead letter), da3 busy: the worker moves past
            // the first two and sends da3 and da4 again.
            #expect(error.confirmedPrefix == 2)
            #expect(error.rejectedInPrefix.map(\.recordID) == [2])
            #expect(error.kind == .retryable)
        }
        #expect(receiver.requests.map(Self.bulkIDs) == [["da1", "da2", "da3", "da4"], ["da3"], ["da3"], ["da3"]])
        #expect(waits.all == HTTPSink.busyRetryWaits)
    }

    static func json(_ status: Int, _ body: String) -> HTTPExchangeResponse {
        HTTPExchangeResponse(status: status, body: Data(body.utf8))
    }

    @Test(arguments: [-1, -2, 5, 3, Int.min, Int.max])
    func aHECEventNumberOutsideTheBatchNamesNoEvent(number: Int) async throws {
        // Splunk answers -1 when the whole request is unreadable: it once crashed the daemon.
        let (sink, receiver) = Self.sink(.splunkHEC, [Self.json(400, #"{"text":"Invalid data format","code":6,"invalid-event-number":\#(number)}"#)])
        let records = (1...3).map { HTTPSinkTests.record($0) }
        // Narrowed down by halves like any refusal that names no record: each one refused alone
        // (the worker then holds a batch refused whole: DeadLetterTests).
        #expect(try await sink.send(records).map(\.recordID).sorted() == [1, 2, 3])
        #expect(receiver.requests.count == 5)
    }

    @Test func aPoisonAmongGoodAlertsIsADeadLetterAndTheRestGoOn() async throws {
        // The receiver takes one request in two: half the alerts are dead letters, the batch goes on.
        let (sink, _) = Self.sink(.json, [Self.json(200, "{}"), Self.json(400, "bad"), Self.json(200, "{}"), Self.json(400, "bad")])
        #expect(try await sink.send((1...4).map { HTTPSinkTests.record($0) }).map(\.recordID) == [2, 4])
    }

    @Test func anEmptyRefusedBatchIsNoCrash() throws {
        let outcome = try HTTPSink.outcome(of: Self.json(400, "no"), for: [], format: .json, url: "http://127.0.0.1:9/in")
        #expect(outcome.rejected.isEmpty && outcome.again.isEmpty)
    }

    @Test func aBasicCredentialEchoedInBytesThatAreNotUTF8IsMaskedEverywhere() async throws {
        let token = "alice:CANARY-basic-pass-5Qx"
        let header = "Basic " + Data(token.utf8).base64EncodedString()
        // The echo of the request headers, after a byte that makes the body invalid UTF-8.
        var body = Data([0xFF, 0xFE, 0x80]) + Data("request: Authorization: \(header)\r\nX-Api-Key: unregistered-key-998\r\n".utf8)
        body.append(contentsOf: [0xC3, 0x28])
        #expect(String(data: body, encoding: .utf8) == nil)
        for status in [400, 500] {
            let (sink, _) = Self.sink(.ndjson, [HTTPExchangeResponse(status: status, body: body)], token: token, authorization: .basic)
            var texts: [String] = []
            do {
                texts += try await sink.send([HTTPSinkTests.record(1)]).map(\.reason)
            } catch {
                texts.append(error.description)
            }
            #expect(!texts.isEmpty)
            for text in texts {
                #expect(!text.contains(Data(token.utf8).base64EncodedString()), "\(text)")
                #expect(!text.contains("CANARY-basic-pass") && !text.contains("unregistered-key-998"), "\(text)")
                #expect(text.contains("Authorization: Basic <redacted>"), "\(text)")
                #expect(!text.contains("\r") && !text.contains("\n"), "\(text)")
            }
        }
    }

    @Test func echoesInUTF16OrWithEscapedSlashesAreMasked() async throws {
        let token = "bob:CANARY???x"  // its base64 holds a /
        let basic = Data(token.utf8).base64EncodedString()
        // UTF-16LE without a byte-order mark (valid UTF-8, a NUL beside each character), and
        // JSON that escapes / in the base64 (PHP does).
        let utf16 = Data("Authorization: Basic \(basic)".utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })
        let escaped = Data(#"{"echo":"Authorization: Basic \#(basic.replacingOccurrences(of: "/", with: "\\/"))"}"#.utf8)
        for body in [utf16, escaped] {
            let (sink, _) = Self.sink(.ndjson, [HTTPExchangeResponse(status: 400, body: body)], token: token, authorization: .basic)
            let reasons = try await sink.send([HTTPSinkTests.record(1)]).map(\.reason)
            #expect(reasons.count == 1)
            for reason in reasons {
                #expect(
                    !reason.contains("CANARY") && !reason.contains(String(basic.prefix(12))) && !reason.contains(String(basic.suffix(12))),
                    "\(reason)")
            }
        }
        // A password holding / ? # in a URL is masked whole.
        let shown = SecretRedaction.redact("bad proxy_url \"http://u:pa/ss?x#y@proxy:3128\"")
        #expect(!shown.contains("pa/ss") && shown.contains("http://u:<redacted>@proxy:3128"), "\(shown)")
    }

    @Test func whatLeavesTheProcessIsMaskedAndPrintable() throws {
        let status = PipelineStatus(clock: .continuous)
        status.sink("siem", failing: "HTTP 500: Authorization: Bearer eyJ.unregistered\u{1B}]8;;http://evil\u{07}click\u{1B}]8;;\u{07}\nforged line")
        let failure = try #require(status.failures(longerThan: .seconds(-1)).first)
        #expect(failure.reason.contains("Bearer <redacted>") && !failure.reason.contains("eyJ.unregistered"), "\(failure.reason)")
        #expect(!failure.reason.contains("\u{1B}") && !failure.reason.contains("\n") && !failure.reason.contains("\u{07}"), "\(failure.reason)")
        let report = HealthReport(stalls: [], failures: [failure])
        #expect(!report.json.contains("eyJ.unregistered"))
        let rejection = SinkRejection(recordID: 1, reason: "refused \u{85}\u{2028}\u{202E}txt.exe")
        #expect(rejection.reason == "refused \\u0085\\u2028\\u202etxt.exe")
    }

    @Test func aRedirectNeedsAPersonAndIsNotADeadLetter() async throws {
        for status in [301, 302, 307, 308] {
            let (sink, receiver) = Self.sink(
                .splunkHEC, [HTTPExchangeResponse(status: status, headers: [("Location", "https://splunk.example/login")])])
            await #expect {
                _ = try await sink.send((1...6).map { HTTPSinkTests.record($0) })
            } throws: { error in
                let error = error as? SinkError
                return error?.kind == .needsOperator && error?.description.contains("redirects") == true
                    && error?.description.contains("https://splunk.example/login") == true
            }
            // Once: a redirect is not narrowed down by halves.
            #expect(receiver.requests.count == 1)
        }
    }

    @Test(arguments: [1, 2, 3, 4, 7, 10, 11, 14, 16])
    func aHECCodeOfConfigurationHoldsTheQueue(code: Int) async throws {
        let (sink, receiver) = Self.sink(.splunkHEC, [Self.json(400, #"{"text":"Incorrect index","code":\#(code),"invalid-event-number":1}"#)])
        await #expect {
            _ = try await sink.send((1...200).map { HTTPSinkTests.record($0) })
        } throws: { error in
            (error as? SinkError)?.kind == .needsOperator && "\(error)".contains("HEC code \(code)")
        }
        #expect(receiver.requests.count == 1)
    }

    @Test(arguments: [(401, "security_exception"), (403, "security_exception"), (404, "index_not_found_exception")])
    func anElasticsearchItemRefusedForLackOfRightsHoldsTheQueue(status: Int, type: String) async throws {
        let item =
            #"{"index":{"_index":"defender-alerts","status":\#(status),"error":{"type":"\#(type)","reason":"action [indices:data/write/bulk[s]] is unauthorized"}}}"#
        let body = #"{"errors":true,"items":[\#(Array(repeating: item, count: 3).joined(separator: ","))]}"#
        let (sink, _) = Self.sink(.elasticsearchBulk, [Self.json(200, body)])
        await #expect {
            _ = try await sink.send((1...3).map { HTTPSinkTests.record($0) })
        } throws: { error in
            (error as? SinkError)?.kind == .needsOperator && "\(error)".contains(type)
        }
    }
}
