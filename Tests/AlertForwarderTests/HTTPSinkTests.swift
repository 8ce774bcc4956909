import DefenderAPI
import Foundation
import OrderedJSON
import Synchronization
import TestSupport
import Testing

@testable import AlertForwarder

/// The http sink against a local receiver that answers as Splunk HEC, the Elasticsearch bulk
/// API and a webhook do.
@Suite("HTTP sink")
struct HTTPSinkTests {
    static func record(_ id: Int64, title: String = "Suspicious 'LSASS' access") -> OutboxRecord {
        SyslogSinkTests.record(id, title: title)
    }

    static func sink(
        _ base: String, _ path: String, _ format: HTTPBodyFormat, token: String?, batch: Int = 500, gzip: Bool = false,
        timeout: Duration = .seconds(10)
    ) -> HTTPSink {
        let settings = HTTPSinkSettings(
            url: base + path, format: format, token: token.map(Secret.init), batchMaxAlerts: batch,
            timeout: timeout, gzip: gzip, host: "collector-1")
        return HTTPSink(settings: settings, proxy: ProxySettings(server: nil))
    }

    @Test func sinksWithTheSameCAFileAndProxyShareOneClientClosedWithTheLast() async throws {
        let siem = FakeSIEM()
        try await siem.serve { base throws in
            let clients = SinkHTTPClients()
            let settings = { (path: String) in
                HTTPSinkSettings(url: base + path, format: .splunkHEC, token: Secret(siem.token), batchMaxAlerts: 500, timeout: .seconds(10))
            }
            let proxy = ProxySettings(server: nil)
            let one = HTTPSink(settings: settings("/services/collector/event"), proxy: proxy, clients: clients)
            let other = HTTPSink(settings: settings("/services/collector/event"), proxy: proxy, clients: clients)
            var unreadable = settings("/services/collector/event")
            unreadable.caFile = "/nonexistent/ca.pem"
            let refused = HTTPSink(settings: unreadable, proxy: proxy, clients: clients)
            #expect(clients.count == 1)
            #expect(try await one.send([Self.record(1)]).isEmpty)
            #expect(try await other.send([Self.record(2)]).isEmpty)
            await #expect(throws: SinkError.self) { try await refused.send([Self.record(3)]) }
            await one.shutdown()
            await one.shutdown()
            // The other sink's client is still open: a second shutdown of the first counts once.
            #expect(clients.count == 1)
            #expect(try await other.send([Self.record(4)]).isEmpty)
            await other.shutdown()
            await refused.shutdown()
            #expect(clients.count == 0)
            #expect(siem.hecEvents.count == 3)
        }
    }

    @Test(arguments: [false, true])
    func splunkHECEvents(gzip: Bool) async throws {
        let siem = FakeSIEM()
        try await siem.serve { base throws in
            let sink = Self.sink(base, "/services/collector/event", .splunkHEC, token: siem.token, gzip: gzip)
            let records = (1...3).map { Self.record($0) }
            #expect(try await sink.send(records).isEmpty)
            await sink.shutdown()
            let events = siem.hecEvents
            #expect(events.count == 3)
            for (event, record) in zip(events, records) {
                #expect(event["event"]?.serialized == record.payload)
                #expect(event["sourcetype"] == .string("ms:defender:atp:alerts"))
                #expect(event["host"] == .string("collector-1"))
                #expect(event["time"] == .number("1795636316.123"))
                #expect(event["fields"] == .object([("tenant", .string("contoso")), ("event", .string("created")), ("kind", .string("alert"))]))
                #expect(event["index"] == nil)
            }
            #expect(siem.requests.map(\.headers["content-encoding"]) == [gzip ? "gzip" : nil])
        }
    }

    @Test func aPoisonEventIsRefusedByNumberAndTheRestIndexed() async throws {
        let siem = FakeSIEM()
        try await siem.serve { base throws in
            let sink = Self.sink(base, "/services/collector/event", .splunkHEC, token: siem.token)
            let records = [Self.record(1), Self.record(2), Self.record(3, title: "poison"), Self.record(4), Self.record(5)]
            let rejected = try await sink.send(records)
            #expect(rejected.map(\.recordID) == [3])
            #expect(rejected.first?.reason.contains(#""code":6"#) == true)
            #expect(siem.hecEvents.compactMap { $0["event"]?["id"]?.stringValue } == ["da1", "da2", "da4", "da5"])
            // The refused request, then the events before the poison, then those after it.
            #expect(siem.requests.map(\.status) == [400, 200, 200])
            await sink.shutdown()
        }
    }

    @Test func elasticsearchBulkReadsEveryItemAndWritesByID() async throws {
        let siem = FakeSIEM()
        try await siem.serve { base throws in
            let sink = Self.sink(base, "/_bulk", .elasticsearchBulk, token: siem.token)
            let records = [Self.record(1), Self.record(2, title: "poison"), Self.record(3)]
            let rejected = try await sink.send(records)
            #expect(rejected.map(\.recordID) == [2])
            #expect(rejected.first?.reason.contains("mapper_parsing_exception") == true)
            #expect(siem.bulkDocuments.map(\.id) == ["da1_2026-11-25T19:51:56.1234567Z", "da3_2026-11-25T19:51:56.1234567Z"])
            #expect(siem.bulkDocuments.allSatisfy { $0.index == "defender-alerts" })
            // Delivered again (a retry after a crash): the same documents, overwritten, not doubled.
            _ = try await sink.send(records)
            #expect(siem.bulkDocuments.count == 2)
            #expect(siem.requests.allSatisfy { $0.headers["content-type"] == "application/x-ndjson" })
            await sink.shutdown()
        }
    }

    @Test func aWebhookRefusalIsNarrowedDownToTheOneRecord() async throws {
        let siem = FakeSIEM()
        try await siem.serve { base throws in
            let sink = Self.sink(base, "/hook", .jsonArray, token: siem.token)
            let records = (1...8).map { Self.record($0, title: $0 == 6 ? "poison" : "fine") }
            let rejected = try await sink.send(records)
            #expect(rejected.map(\.recordID) == [6])
            let delivered = siem.hookBodies.flatMap { body -> [String] in
                guard case .array(let alerts)? = try? JSONValue(parsing: body) else { return [] }
                return alerts.compactMap { $0["id"]?.stringValue }
            }
            #expect(delivered.sorted() == ["da1", "da2", "da3", "da4", "da5", "da7", "da8"])
            // 1 request of 8, then halves: 4 (ok) + 4 (refused), 2 (refused) + 2 (ok), 1 (refused) + 1 (ok).
            #expect(siem.requests.count == 7)
            await sink.shutdown()
        }
    }

    @Test func jsonIsOneAlertPerRequestAndNdjsonOneLinePerAlert() async throws {
        let siem = FakeSIEM()
        try await siem.serve { base throws in
            let records = (1...3).map { Self.record($0) }
            let json = Self.sink(base, "/hook", .json, token: siem.token, batch: 100)
            #expect(try await json.send(records).isEmpty)
            await json.shutdown()
            #expect(siem.hookBodies.map { String(decoding: $0, as: UTF8.self) } == records.map(\.payload))
            let ndjson = Self.sink(base, "/hook", .ndjson, token: siem.token)
            #expect(try await ndjson.send(records).isEmpty)
            await ndjson.shutdown()
            #expect(String(decoding: siem.hookBodies[3], as: UTF8.self) == records.map { $0.payload + "\n" }.joined())
        }
    }

    @Test func batchesAreSplitBySize() async throws {
        let siem = FakeSIEM()
        try await siem.serve { base throws in
            var settings = HTTPSinkSettings(url: base + "/hook", format: .ndjson, token: Secret(siem.token), batchMaxAlerts: 3)
            let sink = HTTPSink(settings: settings, proxy: ProxySettings(server: nil))
            #expect(try await sink.send((1...7).map { Self.record($0) }).isEmpty)
            #expect(siem.hookBodies.map { $0.split(separator: UInt8(ascii: "\n")).count } == [3, 3, 1])
            await sink.shutdown()
            settings.batchMaxAlerts = 100
            settings.batchMaxBytes = 1024
            let small = HTTPSink(settings: settings, proxy: ProxySettings(server: nil))
            #expect(try await small.send((1...4).map { Self.record($0) }).isEmpty)
            #expect(siem.hookBodies.suffix(from: 3).allSatisfy { $0.count <= 1024 })
            await small.shutdown()
        }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/tinyproxy"), "needs Debian's tinyproxy (make deps installs it)"))
    func throughTheConfiguredProxy() async throws {
        let proxy = try TinyProxy()
        let siem = FakeSIEM()
        try await siem.serve { base throws in
            let settings = HTTPSinkSettings(url: base + "/hook", format: .ndjson, token: Secret(siem.token))
            let sink = HTTPSink(settings: settings, proxy: ProxySettings.resolve(proxyURL: "http://127.0.0.1:\(proxy.port)", environment: [:]))
            #expect(try await sink.send([Self.record(1)]).isEmpty)
            await sink.shutdown()
            #expect(siem.hookBodies.count == 1)
            // AsyncHTTPClient tunnels through the proxy (CONNECT) for http:// too.
            #expect(proxy.log.contains("CONNECT \(base.dropFirst("http://".count)) HTTP/1.1"), "\(proxy.log.suffix(500))")
        }
    }

    // MARK: Faults

    private func failure(
        _ fault: FakeSIEM.Fault? = nil, path: String = "/services/collector/event", token: String? = nil,
        timeout: Duration = .seconds(10)
    ) async throws -> SinkError {
        let siem = FakeSIEM()
        if let fault { siem.fail(next: [fault]) }
        let result = Mutex<SinkError?>(nil)
        try await siem.serve { base throws in
            let sink = Self.sink(base, path, .splunkHEC, token: token ?? siem.token, timeout: timeout)
            do {
                _ = try await sink.send([Self.record(1)])
            } catch {
                result.withLock { $0 = error as? SinkError }
            }
            await sink.shutdown()
            #expect(siem.hecEvents.isEmpty)
        }
        return try #require(result.withLock { $0 })
    }

    @Test func busyAndFailingReceiversAreRetried() async throws {
        let busy = try await failure(FakeSIEM.Fault(status: 503, body: #"{"text":"Server is busy","code":9}"#))
        #expect(busy.kind == .retryable && busy.description.contains("Server is busy"))
        let limited = try await failure(FakeSIEM.Fault(status: 429, retryAfter: "7"))
        #expect(limited.kind == .retryable && limited.retryAfter == .seconds(7))
        let slow = try await failure(FakeSIEM.Fault(status: 200, delay: .seconds(3)), timeout: .milliseconds(500))
        #expect(slow.kind == .retryable && slow.description.contains("timed out"))
    }

    @Test func aReceiverThatIsDownIsRetried() async throws {
        let port = try LoopbackPort.free()
        let sink = Self.sink("http://127.0.0.1:\(port)", "/services/collector/event", .splunkHEC, token: "t", timeout: .seconds(5))
        await #expect {
            _ = try await sink.send([Self.record(1)])
        } throws: { error in
            let error = error as? SinkError
            return error?.kind == .retryable && error?.description.contains("POST http://127.0.0.1:\(port)/services/collector/event failed") == true
        }
        await sink.shutdown()
    }

    @Test func aReceiverThatEchoesTheTokenDoesNotGetItIntoTheReasons() async throws {
        let siem = FakeSIEM()
        let echoing = #"{"text":"Invalid data format","code":6,"invalid-event-number":0,"request":"Authorization: Splunk \#(siem.token)"}"#
        // A proxy in between may echo it in another form: base64, as in a Basic header.
        siem.fail(next: [
            FakeSIEM.Fault(status: 400, body: echoing), FakeSIEM.Fault(status: 503, body: "busy \(siem.token)"),
            FakeSIEM.Fault(status: 400, body: #"{"text":"proxy said: Authorization: Basic \#(Data(siem.token.utf8).base64EncodedString())"}"#),
        ])
        try await siem.serve { base throws in
            let sink = Self.sink(base, "/services/collector/event", .splunkHEC, token: siem.token)
            let rejected = try await sink.send([Self.record(1)])
            #expect(rejected.count == 1 && rejected[0].reason.contains("Authorization: Splunk <redacted>"), "\(rejected)")
            #expect(!rejected[0].reason.contains(siem.token))
            await #expect { _ = try await sink.send([Self.record(2)]) } throws: {
                !"\($0)".contains(siem.token) && "\($0)".contains("busy <redacted>")
            }
            let proxied = try await sink.send([Self.record(3)])
            #expect(
                proxied.count == 1 && proxied[0].reason.contains("Basic <redacted>")
                    && !proxied[0].reason.contains(Data(siem.token.utf8).base64EncodedString()),
                "\(proxied)")
            await sink.shutdown()
        }
    }

    @Test func aWrongTokenOrURLNeedsAPersonAndNeverShowsTheToken() async throws {
        let token = "CANARY-wrong-token-77aa"
        let denied = try await failure(token: token)
        #expect(denied.kind == .needsOperator && denied.description.contains("Invalid token"), "\(denied)")
        #expect(!denied.description.contains(token))
        let missing = try await failure(path: "/services/collector/raw/nowhere")
        #expect(missing.kind == .needsOperator && missing.description.contains("check url"), "\(missing)")
    }

    @Test func aRecordTooLargeForTheReceiverIsADeadLetter() async throws {
        let siem = FakeSIEM(maxBody: 2000)
        try await siem.serve { base throws in
            let sink = Self.sink(base, "/hook", .ndjson, token: siem.token)
            let huge = SyslogSinkTests.record(2, padding: 5000)
            let rejected = try await sink.send([Self.record(1), huge, Self.record(3)])
            #expect(rejected.map(\.recordID) == [2])
            #expect(rejected.first?.reason.contains("HTTP 413") == true)
            #expect(siem.hookBodies.count == 2)
            await sink.shutdown()
        }
    }
}
