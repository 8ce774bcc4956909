import CompressNIO
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OrderedJSON
import Synchronization

/// A local HTTP receiver that answers as Splunk's HTTP Event Collector and Elasticsearch's
/// bulk API document (and as a plain webhook), with faults on request: every alert whose
/// title contains "poison" is refused as those receivers refuse a bad record.
///
/// - `POST /services/collector/event`: `Authorization: Splunk <token>`; 401
///   `{"text":"Token is required","code":2}` without, 403 `{"text":"Invalid token","code":4}`
///   for another; 200 `{"text":"Success","code":0}`; a poison event: 400 `{"text":"Invalid data
///   format","code":6,"invalid-event-number":N}`, nothing of that request indexed.
/// - `POST /_bulk`: `Authorization: ApiKey <token>`; 401 with a `security_exception`; 200 with
///   one item per `index` or `create` action, a poison document `400 mapper_parsing_exception`,
///   a `create` of an id the index holds `409 version_conflict_engine_exception`, `errors: true`.
/// - `POST /hook`: `Authorization: Bearer <token>`; 200; 400 when the body holds a poison alert.
/// - Any path: 413 for a body over `maxBody`; the scripted faults first (`fail(next:)`).
public final class FakeSIEM: Sendable {
    public struct Fault: Sendable {
        public var status: Int
        public var retryAfter: String?
        public var body: String
        public var delay: Duration

        public init(status: Int, retryAfter: String? = nil, body: String = "", delay: Duration = .zero) {
            self.status = status
            self.retryAfter = retryAfter
            self.body = body
            self.delay = delay
        }
    }

    private struct State {
        var faults: [Fault] = []
        var hecEvents: [JSONValue] = []
        var bulkDocuments: [(id: String, index: String, document: JSONValue)] = []
        var bulkActions: [(operation: String, index: String, id: String, pipeline: String?)] = []
        var hookBodies: [Data] = []
        var requests: [(path: String, status: Int, headers: [String: String])] = []
    }

    public let token: String
    public let maxBody: Int
    private let state = Mutex(State())

    public init(token: String = "CANARY-hec-token-5b1f", maxBody: Int = 1_000_000) {
        self.token = token
        self.maxBody = maxBody
    }

    /// The next requests get these answers, in order, whatever they are.
    public func fail(next faults: [Fault]) {
        state.withLock { $0.faults += faults }
    }

    public var hecEvents: [JSONValue] { state.withLock { $0.hecEvents } }
    public var bulkDocuments: [(id: String, index: String, document: JSONValue)] { state.withLock { $0.bulkDocuments } }
    /// Every bulk action received, in order (documents sent again included).
    public var bulkActions: [(operation: String, index: String, id: String, pipeline: String?)] { state.withLock { $0.bulkActions } }
    public var hookBodies: [Data] { state.withLock { $0.hookBodies } }
    /// Every request: path, answer status and headers (names lower-cased).
    public var requests: [(path: String, status: Int, headers: [String: String])] { state.withLock { $0.requests } }

    /// Serves on 127.0.0.1 for the duration of `body`.
    public func serve(_ body: @Sendable (_ baseURL: String) async throws -> Void) async throws {
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        var logger = Logger(label: "fake-siem")
        logger.logLevel = .critical
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            var bytes = try await request.body.collect(upTo: 64 * 1024 * 1024)
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            if headers["content-encoding"] == "gzip" { bytes = try bytes.decompress(with: .gzip()) }
            let (status, extra, answer, delay) = self.answer(path: request.uri.path, headers: headers, body: Data(buffer: bytes))
            self.state.withLock { $0.requests.append((request.uri.path, status, headers)) }
            if delay > .zero { try await Task.sleep(for: delay) }
            var fields = HTTPFields()
            fields[.contentType] = "application/json"
            for (name, value) in extra { if let field = HTTPField.Name(name) { fields[field] = value } }
            return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(string: answer)))
        }
        let app = Application(
            responder: responder, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "fake-siem"),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) }, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            defer { group.cancelAll() }
            try await body("http://127.0.0.1:\(port)")
        }
    }

    private func answer(path: String, headers: [String: String], body: Data) -> (Int, [(String, String)], String, Duration) {
        if let fault = state.withLock({ $0.faults.isEmpty ? nil : $0.faults.removeFirst() }) {
            return (fault.status, fault.retryAfter.map { [("Retry-After", $0)] } ?? [], fault.body, fault.delay)
        }
        if body.count > maxBody {
            return (413, [], #"{"text":"Content too large"}"#, .zero)
        }
        let authorization = headers["authorization"]
        switch path {
        case "/services/collector/event":
            guard let authorization else { return (401, [], #"{"text":"Token is required","code":2}"#, .zero) }
            guard authorization == "Splunk \(token)" else { return (403, [], #"{"text":"Invalid token","code":4}"#, .zero) }
            let events = Self.lines(body)
            // A request with an invalid event is refused whole (nothing of it is indexed here).
            if let number = events.firstIndex(where: { $0 == nil || Self.isPoison($0?["event"]) }) {
                return (400, [], #"{"text":"Invalid data format","code":6,"invalid-event-number":\#(number)}"#, .zero)
            }
            state.withLock { $0.hecEvents += events.compactMap { $0 } }
            return (200, [], #"{"text":"Success","code":0}"#, .zero)
        case "/_bulk":
            guard authorization == "ApiKey \(token)" else {
                return (
                    401, [],
                    #"{"error":{"root_cause":[{"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]"}],"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]"},"status":401}"#,
                    .zero
                )
            }
            let lines = Self.lines(body)
            var items: [String] = []
            var errors = false
            var index = 0
            while index + 1 < lines.count {
                guard case .object(let members)? = lines[index], let (operation, action) = members.first, ["index", "create"].contains(operation),
                    let id = action["_id"]?.stringValue, let document = lines[index + 1]
                else {
                    return (
                        400, [], #"{"error":{"type":"illegal_argument_exception","reason":"Malformed action/metadata line"},"status":400}"#, .zero
                    )
                }
                let target = action["_index"]?.stringValue ?? ""
                state.withLock { $0.bulkActions.append((operation, target, id, action["pipeline"]?.stringValue)) }
                if Self.isPoison(document) {
                    errors = true
                    items.append(
                        #"{"\#(operation)":{"_index":"\#(target)","_id":"\#(id)","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [title] of type [date] in document with id '\#(id)'"}}}"#
                    )
                } else {
                    // `create` (what a data stream takes) refuses an id it holds: 409, the document kept.
                    let result = state.withLock { state -> Int in
                        let known = state.bulkDocuments.contains { $0.id == id && $0.index == target }
                        if known && operation == "create" { return 409 }
                        state.bulkDocuments.removeAll { $0.id == id && $0.index == target }
                        state.bulkDocuments.append((id, target, document))
                        return known ? 200 : 201
                    }
                    if result == 409 {
                        errors = true
                        items.append(
                            #"{"create":{"_index":"\#(target)","_id":"\#(id)","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[\#(id)]: version conflict, document already exists"}}}"#
                        )
                    } else {
                        items.append(
                            #"{"\#(operation)":{"_index":"\#(target)","_id":"\#(id)","result":"\#(result == 201 ? "created" : "updated")","status":\#(result)}}"#
                        )
                    }
                }
                index += 2
            }
            return (200, [], #"{"took":3,"errors":\#(errors),"items":[\#(items.joined(separator: ","))]}"#, .zero)
        case "/hook":
            guard authorization == "Bearer \(token)" else { return (401, [], #"{"error":"unauthorized"}"#, .zero) }
            if String(decoding: body, as: UTF8.self).contains("poison") { return (400, [], #"{"error":"cannot process this alert"}"#, .zero) }
            state.withLock { $0.hookBodies.append(body) }
            return (200, [], "{}", .zero)
        default:
            return (404, [], #"{"error":"not found"}"#, .zero)
        }
    }

    private static func lines(_ body: Data) -> [JSONValue?] {
        String(decoding: body, as: UTF8.self).split(separator: "\n").map { try? JSONValue(parsing: String($0)) }
    }

    /// An alert whose title holds "poison", as Defender's JSON or an ECS document (`rule.name`).
    private static func isPoison(_ document: JSONValue?) -> Bool {
        (document?["title"]?.stringValue ?? document?["rule"]?["name"]?.stringValue)?.contains("poison") == true
    }
}
