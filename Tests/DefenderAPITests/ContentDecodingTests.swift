import CDeflate
import DefenderSimulator
import Foundation
import OrderedJSON
import TestSupport
import Testing

@testable import DefenderAPI

/// Response bodies are inflated whole (libdeflate); what a server may send, honest or not.
@Suite("Content-Encoding")
struct ContentDecodingTests {
    /// Alert-like JSON with escapes, non-ASCII and unusual number text.
    static let text = Data(
        (0..<500).map { index in
            #"{"id":"da\#(index)","title":"Caf\u00e9 \"quoted\" — 東京","n":1.50e+03,"ok":true}"# + "\n"
        }.joined().utf8)

    static func compress(_ data: Data, _ format: Compression) -> Data {
        let compressor = libdeflate_alloc_compressor(6)!
        defer { libdeflate_free_compressor(compressor) }
        return data.withUnsafeBytes { input in
            var output = Data(count: libdeflate_gzip_compress_bound(compressor, input.count) + 64)
            let count = output.withUnsafeMutableBytes { out in
                switch format {
                case .gzip: libdeflate_gzip_compress(compressor, input.baseAddress, input.count, out.baseAddress, out.count)
                case .zlib: libdeflate_zlib_compress(compressor, input.baseAddress, input.count, out.baseAddress, out.count)
                case .raw: libdeflate_deflate_compress(compressor, input.baseAddress, input.count, out.baseAddress, out.count)
                }
            }
            return output.prefix(count)
        }
    }

    enum Compression { case gzip, zlib, raw }

    static func decode(_ body: Data, _ encoding: String?, limit: Int = 1 << 20) -> Result<Data, TransportError> {
        body.withUnsafeBytes { bytes in
            Result { () throws(TransportError) in try ContentDecoding.decode(bytes, encoding: encoding, limit: limit) }
        }
    }

    @Test(arguments: [("gzip", Compression.gzip), ("x-gzip", .gzip), ("GZIP ", .gzip), ("deflate", .zlib), ("deflate", .raw)])
    func inflatesToTheSameBytes(encoding: String, format: Compression) throws {
        let body = Self.compress(Self.text, format)
        #expect(body.count < Self.text.count / 4)
        #expect(try Self.decode(body, encoding).get() == Self.text)
    }

    @Test func identityAndNoEncodingPassThrough() throws {
        #expect(try Self.decode(Self.text, nil).get() == Self.text)
        #expect(try Self.decode(Self.text, "identity").get() == Self.text)
        #expect(try Self.decode(Data(), nil).get() == Data())
        #expect(try Self.decode(Self.compress(Data(), .gzip), "gzip").get() == Data())
    }

    @Test func severalGzipMembersAreOneBody() throws {
        // The trailer read as a size hint is the last member's (100 bytes): the buffer grows.
        let first = Self.text.dropLast(100), last = Self.text.suffix(100)
        let body = Self.compress(Data(first), .gzip) + Self.compress(Data(last), .gzip)
        #expect(try Self.decode(body, "gzip").get() == Self.text)
    }

    @Test func aTrailerWithTheWrongSizeIsCorrupt() {
        // RFC 1952: ISIZE is the size of the original input; zlib rejects a mismatch too.
        var body = Self.compress(Self.text, .gzip)
        body.replaceSubrange(body.count - 4..<body.count, with: [10, 0, 0, 0])
        guard case .failure(.connection(let message)) = Self.decode(body, "gzip") else {
            Issue.record("a wrong ISIZE was accepted"); return
        }
        #expect(message.contains("corrupt"))
    }

    @Test func aBombStopsAtTheLimit() {
        // 64 MiB of zeros compress to about 64 KiB; the limit is 1 MiB.
        let bomb = Self.compress(Data(count: 64 << 20), .gzip)
        #expect(bomb.count < 100_000)
        #expect(Self.decode(bomb, "gzip", limit: 1 << 20) == .failure(.bodyTooLarge(1 << 20)))
        // Lying about its size changes nothing.
        var lying = bomb
        lying.replaceSubrange(lying.count - 4..<lying.count, with: [0, 1, 0, 0])
        #expect(Self.decode(lying, "gzip", limit: 1 << 20) == .failure(.bodyTooLarge(1 << 20)))
        // Exactly at the limit is accepted; an identity body over it is not.
        #expect(try! Self.decode(Self.compress(Data(count: 1 << 20), .gzip), "gzip", limit: 1 << 20).get().count == 1 << 20)
        #expect(Self.decode(Data(count: 1001), nil, limit: 1000) == .failure(.bodyTooLarge(1000)))
    }

    @Test func corruptBodiesAreTypedErrors() {
        let body = Self.compress(Self.text, .gzip)
        var flipped = body
        flipped[body.count / 2] ^= 0x55
        var badChecksum = body
        badChecksum[body.count - 6] ^= 0x01
        for (name, bad) in [
            ("truncated", body.prefix(body.count - 9)), ("flipped", flipped), ("checksum", badChecksum),
            ("plain text", Self.text), ("trailing garbage", body + Data("junk".utf8)), ("empty", Data()),
        ] {
            guard case .failure(.connection(let message)) = Self.decode(Data(bad), "gzip") else {
                Issue.record("\(name): not a connection error"); continue
            }
            #expect(message.contains("corrupt"), "\(name): \(message)")
        }
        guard case .failure(.connection(let message)) = Self.decode(Self.text, "br") else {
            Issue.record("an encoding never asked for was accepted"); return
        }
        #expect(message.contains("br"))
    }

    @Test func theHTTPClientInflatesAndBoundsWhatTheSimulatorSends() async throws {
        let harness = try APIHarness()
        _ = try await harness.simulator.generateAlerts(count: 200, lastUpdateTime: APIHarness.start)
        let fetch = { @Sendable (base: String, transport: DefenderHTTPClient) async throws(TransportError) -> HTTPExchangeResponse in
            let token = try! await harness.tokenProvider(base: base, transport: transport).token()
            return try await transport.send(
                HTTPExchangeRequest(method: "GET", url: base + "/api/alerts?$top=200", bearer: token.value),
                deadline: .seconds(10))
        }
        try await harness.live { base, transport in
            let response = try await fetch(base, transport)
            #expect(response.header("Content-Encoding") == "gzip")
            let contentLength = try #require(response.header("Content-Length").flatMap { Int($0) })
            #expect(response.body.count > 4 * contentLength, "compressed \(contentLength), decoded \(response.body.count)")
            guard case .array(let alerts)? = try JSONValue(parsing: response.body)["value"] else {
                Issue.record("no value array"); return
            }
            #expect(alerts.count == 200)
        }
        // The compressed body fits in 64 KiB, the decoded one does not.
        try await harness.live(maximumBodySize: 64 * 1024) { base, transport in
            let result = await capture { () async throws(TransportError) in try await fetch(base, transport) }
            guard case .failure(let error) = result else { Issue.record("a body over the limit was accepted"); return }
            #expect(error == .bodyTooLarge(64 * 1024))
        }
    }
}

/// Answers are bounded (issue 11, hole 17): by size, as they arrive, and by element count.
@Suite("Response size limits")
struct ResponseSizeTests {
    @Test func moreElementsThanAskedForAreRefusedEarly() throws {
        let body = #"{"value":["# + Array(repeating: "1", count: 1001).joined(separator: ",") + "]}"
        let response = HTTPExchangeResponse(status: 200, headers: [("Content-Type", "application/json")], body: Data(body.utf8))
        #expect(throws: DefenderAPIError.self) { try AlertsClient.parsePage(response, limit: 1000) }
        #expect(try AlertsClient.parsePage(response, limit: 1001).rejected.count == 1001)
    }

    @Test func anAnswerTooLargeIsReadAgainWithSmallerPages() async throws {
        // Pages of 100 alerts with evidence are about 290 KB; the transport takes at most 64 KB:
        // the client halves the page size until answers fit, and reads every alert.
        let harness = try APIHarness { $0.rateLimitPerMinute = 1_000_000 }
        var expected: [String] = []
        for index in 0..<300 {
            expected += try await harness.simulator.generateAlerts(
                count: 1, lastUpdateTime: APIHarness.start.adding(seconds: -3000 + Double(index) * 10))
        }
        let ids = expected
        try await harness.live(maximumBodySize: 64 * 1024) { base, transport in
            let client = harness.alertsClient(
                base: base, transport: transport, tokens: harness.tokenProvider(base: base, transport: transport),
                settings: .init(pageSize: 100, expandEvidence: true),
                budget: RateBudget(perMinute: 1_000_000, perHour: 1_000_000, clock: harness.clock.clock))
            let read = try await readAll(client, from: APIHarness.start.adding(seconds: -3600)).map(\.id)
            #expect(Set(read) == Set(ids))
            let warnings = harness.records.at(.warning).filter { $0.message.contains("larger than the most accepted") }
            #expect(warnings.map { $0.metadata["page_size"]?.description } == ["50", "25", "12"])
        }
    }

    @Test func theLimitTheREADMEStatesIsTheOneEnforced() throws {
        // The README states the figure (and why); the client's default and its error text must
        // say the same, so that neither drifts from the other.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let stated = try #require(readme.firstMatch(of: /maximum answer of (\d+) MiB/), "the README no longer states the maximum response size")
        let mebibytes = try #require(Int(stated.1))
        #expect(DefenderHTTPClient.Settings().maximumBodySize == mebibytes * 1024 * 1024)
        #expect(TransportError.bodyTooLarge(DefenderHTTPClient.Settings().maximumBodySize).description.contains("\(mebibytes) MiB"))
    }
}
