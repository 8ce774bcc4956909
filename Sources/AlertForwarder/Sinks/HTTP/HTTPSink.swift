import DefenderAPI
import Foundation
import OrderedJSON
import Synchronization
import Timekeeping

/// Alerts POSTed to a webhook, Splunk's HTTP Event Collector or Elasticsearch's bulk API.
///
/// Outcomes, per request: a 2xx confirms (for a bulk, every item's own status is read); 408,
/// 429 (its `Retry-After` honoured), 5xx and network errors fail the batch, which is retried
/// with back-off; 401, 403 and 404 fail it too, as a fault a person must fix (wrong token or
/// URL), retried slowly and never turned into dead letters. Any other refusal is permanent
/// for the record it names (HEC's `invalid-event-number`, a bulk item's error): that record
/// becomes a dead letter and the rest of the batch goes on. A refusal that names no record
/// (a webhook's 400, a 413) is narrowed down by splitting the request in halves until the one
/// record refused alone is found.
public final class HTTPSink: AlertSink {
    public let settings: HTTPSinkSettings
    private let transport: Result<any HTTPTransport, SinkError>
    private let client: DefenderHTTPClient?
    private let clients: SinkHTTPClients
    /// Whether ``shutdown()`` let go of the client (a second call must not count twice).
    private let released = Atomic(false)
    /// Waits before the items Elasticsearch was too busy to take are sent again (tests: no wait).
    private let sleep: @Sendable (Duration) async throws -> Void

    /// The waits before each new try of the items of a bulk that Elasticsearch answered 429 or
    /// 5xx, within one delivery: only those items are sent again, with a doubling back-off, as
    /// Elastic's own clients' bulk helpers do (`streaming_bulk`'s `max_retries` and
    /// `initial_backoff`, https://elasticsearch-py.readthedocs.io/en/stable/helpers.html). After
    /// the last, the delivery fails and the worker's back-off takes over.
    static let busyRetryWaits: [Duration] = [.seconds(1), .seconds(2), .seconds(4)]

    /// The largest answer a receiver may give (an Elasticsearch bulk's items for 10,000
    /// documents take about 2 MB).
    static let maximumAnswerSize = 16 * 1024 * 1024

    /// How much of a refusal's body is read (masked, then quoted in the reason): its start is
    /// what says why; masking a hostile 16 MB page would only cost time.
    static let refusalBodyRead = 64 * 1024

    /// A sink on the client of `clients` for its CA file and `proxy`.
    public convenience init(settings: HTTPSinkSettings, proxy: ProxySettings) {
        self.init(settings: settings, proxy: proxy, clients: .shared)
    }

    init(settings: HTTPSinkSettings, proxy: ProxySettings, clients: SinkHTTPClients) {
        self.settings = settings
        self.clients = clients
        sleep = { try await Task.sleep(for: $0) }
        do {
            let client = try clients.acquire(caFile: settings.caFile, proxy: proxy)
            self.client = client
            transport = .success(client)
        } catch {
            client = nil
            transport = .failure(SinkError("the HTTP client cannot be set up: \(error)", kind: .needsOperator))
        }
    }

    /// With a given transport (tests).
    init(settings: HTTPSinkSettings, transport: any HTTPTransport, sleep: @escaping @Sendable (Duration) async throws -> Void = { _ in }) {
        self.settings = settings
        self.transport = .success(transport)
        self.sleep = sleep
        clients = .shared
        client = nil
    }

    /// Lets go of the shared client (closed when no other sink uses it).
    public func shutdown() async {
        guard let client, !released.exchange(true, ordering: .relaxed) else { return }
        await clients.release(client)
    }

    /// `batch_max_alerts` per request; the worker hands over at least 500, split into requests here.
    public var batchSize: Int { max(500, settings.batchMaxAlerts) }
    /// `flush_interval`.
    public var linger: Duration { settings.flushInterval }

    public func send(_ records: [OutboxRecord]) async throws(SinkError) -> [SinkRejection] {
        let transport = try transport.get()
        var rejected: [SinkRejection] = []
        // Records the receiver took or refused for good: when the delivery fails later, the
        // worker moves past those at the front of the batch and sends only the rest again.
        var settled: Set<Int64> = []
        let entries = HTTPRequestBody.entries(for: records, settings: settings)
        // A record that cannot be written in the sink's shape (not JSON) is a dead letter at once.
        for record in records where entries[record.id] == nil {
            rejected.append(settings.shape.refusal(of: record))
            settled.insert(record.id)
        }
        var pending = HTTPRequestBody.requests(for: records.filter { entries[$0.id] != nil }, entries: entries, settings: settings)
        var busy: [OutboxRecord] = []
        var busyTries = 0
        do throws(SinkError) {
            while !pending.isEmpty || !busy.isEmpty {
                if pending.isEmpty {
                    guard busyTries < Self.busyRetryWaits.count else {
                        throw SinkError(
                            "Elasticsearch did not take \(busy.count) of \(records.count) documents after \(busyTries + 1) tries (busy: 429 or 5xx); they are sent again"
                        )
                    }
                    do {
                        try await sleep(Self.busyRetryWaits[busyTries])
                    } catch {
                        throw SinkError("stopped while Elasticsearch was busy; \(busy.count) documents are sent again")
                    }
                    busyTries += 1
                    pending = HTTPRequestBody.requests(for: busy, entries: entries, settings: settings)
                    busy = []
                }
                let chunk = pending.removeFirst()
                let outcome = try await post(
                    chunk, body: HTTPRequestBody.encode(chunk, entries: entries, format: settings.format),
                    documents: chunk.map { entries[$0.id]?.documents ?? 1 }, with: transport)
                rejected += outcome.rejected
                pending.insert(contentsOf: outcome.again, at: 0)
                busy += outcome.busy
                let open = Set((outcome.again.joined() + outcome.busy).map(\.id))
                settled.formUnion(chunk.lazy.map(\.id).filter { !open.contains($0) })
            }
        } catch {
            var error = error
            let prefix = records.prefix { settled.contains($0.id) }
            let ids = Set(prefix.map(\.id))
            error.confirmedPrefix = prefix.count
            error.rejectedInPrefix = rejected.filter { ids.contains($0.recordID) }
            throw error
        }
        return rejected
    }

    /// What became of one request's records: those refused for good, those to send again at
    /// once (in order) because the receiver did not get to them, and those it was too busy to
    /// take (an Elasticsearch bulk item's 429 or 5xx), sent again after a wait.
    struct Outcome {
        var rejected: [SinkRejection] = []
        var again: [[OutboxRecord]] = []
        var busy: [OutboxRecord] = []
    }

    /// Posts one request; `documents`: how many documents each record put in the body.
    private func post(
        _ records: [OutboxRecord], body: [UInt8], documents: [Int], with transport: any HTTPTransport
    ) async throws(SinkError) -> Outcome {
        var body = body
        var headers = [("Content-Type", settings.format.contentType)] + settings.headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        if settings.gzip {
            body = ContentEncoding.gzip(body)
            headers.append(("Content-Encoding", "gzip"))
        }
        let request = HTTPExchangeRequest(
            method: "POST", url: settings.url, headers: headers, bytes: body,
            authorization: settings.token.map(settings.authorization.header))
        let response: HTTPExchangeResponse
        do {
            response = try await transport.send(request, deadline: settings.timeout)
        } catch {
            throw SinkError("POST \(settings.url) failed: \(error)")
        }
        // A receiver (or a proxy) that echoes the request would put the token into the reasons
        // logged and kept with dead letters: it is masked before the answer is read.
        var answer = response
        let read = (200..<300).contains(response.status) ? response.body : response.body.prefix(Self.refusalBodyRead)
        answer.body = SecretRedaction.redact(bytes: read, also: settings.token.map { [$0] } ?? [])
        return try Self.outcome(of: answer, for: records, documents: documents, format: settings.format, url: settings.url)
    }

    /// Reads a response the way each receiver documents its answers. `documents`: how many
    /// documents (bulk items, HEC events) each record put in the request (nil: one each).
    static func outcome(
        of response: HTTPExchangeResponse, for records: [OutboxRecord], documents: [Int]? = nil, format: HTTPBodyFormat,
        url: String
    ) throws(SinkError) -> Outcome {
        let documents = documents ?? Array(repeating: 1, count: records.count)
        let status = response.status
        let reason = "HTTP \(status)" + (response.body.isEmpty ? "" : ": " + excerpt(response.body))
        switch status {
        case 200..<300:
            return format == .elasticsearchBulk ? try bulkOutcome(response.body, for: records, documents: documents) : Outcome()
        case 300..<400:
            // A receiver's redirect is a URL that moved or is wrong (http:// to https://, a
            // load balancer's login page): the alerts are not at fault, and a POST is not
            // followed to wherever the answer points.
            let location = response.header("Location").map { " to \(PrintableText.shown($0, limit: 200))" } ?? ""
            throw SinkError("\(url) redirects (\(reason))\(location); set url to the receiver's own endpoint", kind: .needsOperator)
        case 408, 429, 500..<600:
            let retryAfter = RetryAfter.parse(response.header("Retry-After"), now: Date().timeIntervalSince1970)?.wait
            throw SinkError("\(url) is busy or failing (\(reason)); the batch is sent again", retryAfter: retryAfter)
        case 401:
            throw SinkError("\(url) refused the credentials (\(reason)); check token_file or token_credential and auth", kind: .needsOperator)
        case 403:
            throw SinkError(
                "\(url) refused access (\(reason)); the token lacks the right to write there (Splunk: a disabled token or an index it may not use; Elasticsearch: the API key's index privileges)",
                kind: .needsOperator)
        case 404:
            throw SinkError(
                "\(url) does not exist (\(reason)); check url (Splunk: .../services/collector/event; Elasticsearch: .../_bulk)", kind: .needsOperator)
        default:
            if format == .splunkHEC, let problem = hecConfigurationProblem(response.body) {
                throw SinkError("\(url) refused the request (\(reason)): \(problem)", kind: .needsOperator)
            }
            // HEC's index is outside data: -1 ("none in particular"), or past the batch, names no event.
            if format == .splunkHEC, let event = invalidEventNumber(response.body), let index = record(holding: event, documents: documents) {
                // The event HEC names is refused for good. Whether HEC kept the events before
                // it is not something its answer says: they are sent again with the rest (a
                // possible duplicate, never a possible loss).
                let outcome = Outcome(
                    rejected: [SinkRejection(recordID: records[index].id, reason: "Splunk HEC refused the event: \(reason)")],
                    again: [Array(records[..<index]), Array(records[(index + 1)...])].filter { !$0.isEmpty })
                return outcome
            }
            guard records.count > 1 else {
                return Outcome(rejected: records.map { SinkRejection(recordID: $0.id, reason: "\(url) refused it: \(reason)") })
            }
            let half = records.count / 2
            return Outcome(again: [Array(records[..<half]), Array(records[half...])])
        }
    }

    /// The index of the record whose documents include the `document`-th of the request.
    static func record(holding document: Int, documents: [Int]) -> Int? {
        guard document >= 0 else { return nil }
        var end = 0
        for (index, count) in documents.enumerated() {
            end += count
            if document < end { return index }
        }
        return nil
    }

    /// An Elasticsearch bulk answer: `{"errors": bool, "items": [{"index": {"status", "error": {"type", "reason"}}}]}`,
    /// one item per action, in order; `documents` says how many actions each record made (its
    /// evidence split): a record counts as delivered when all of its items are, is sent again
    /// when one was too busy, and is refused when one was refused.
    static func bulkOutcome(_ body: Data, for records: [OutboxRecord], documents: [Int]? = nil) throws(SinkError) -> Outcome {
        let documents = documents ?? Array(repeating: 1, count: records.count)
        guard let answer = try? JSONValue(parsing: body) else {
            throw SinkError("the bulk answer is not JSON (\(excerpt(body))); the batch is sent again")
        }
        if answer["errors"] == .bool(false) { return Outcome() }
        guard case .array(let items)? = answer["items"], items.count == documents.reduce(0, +) else {
            throw SinkError("the bulk answer does not list one item per document (\(excerpt(body))); the batch is sent again")
        }
        var outcome = Outcome()
        var next = 0
        for (record, count) in zip(records, documents) {
            var busy = false
            var refusal: String?
            for item in items[next..<(next + count)] {
                guard case .object(let members) = item, let (operation, action) = members.first,
                    let status = action["status"].flatMap(Self.integer)
                else {
                    throw SinkError("a bulk item has no status (\(excerpt(body))); the batch is sent again")
                }
                switch status {
                case 200..<300: continue
                // `create` (a data stream) refuses a document it has already: it was delivered before.
                case 409 where operation == "create": continue
                case 429, 500..<600: busy = true
                case 401, 403, 404:
                    // The API key may not write to that index, or the index does not exist and may
                    // not be created: every other document would be refused alike. The batch waits
                    // for a person (Elasticsearch's security_exception, index_not_found_exception).
                    let type = action["error"]?["type"]?.stringValue ?? "error"
                    throw SinkError(
                        "Elasticsearch refused to index (\(status) \(type): \(excerpt(Data((action["error"]?["reason"]?.stringValue ?? "").utf8)))); check the API key's index privileges and the index name",
                        kind: .needsOperator)
                default:
                    let error = action["error"]
                    let type = error?["type"]?.stringValue ?? "error"
                    let text = error?["reason"]?.stringValue ?? error.map { $0.serialized } ?? ""
                    refusal = refusal ?? "Elasticsearch refused the document (\(status) \(type): \(text))"
                }
            }
            next += count
            if let refusal {
                outcome.rejected.append(SinkRejection(recordID: record.id, reason: refusal))
            } else if busy {
                outcome.busy.append(record)
            }
        }
        return outcome
    }

    /// HEC's answer codes that mean a configuration a person must fix, not a bad event
    /// (Splunk, "Troubleshoot HTTP Event Collector", the table of status codes:
    /// https://docs.splunk.com/Documentation/Splunk/latest/Data/TroubleshootHTTPEventCollector):
    /// 1 token disabled, 2 token required, 3 invalid authorization, 4 invalid token, 7 incorrect
    /// index, 10 data channel missing, 11 invalid data channel, 14 ACK disabled, 16 query string
    /// authorization not enabled.
    static func hecConfigurationProblem(_ body: Data) -> String? {
        guard let answer = try? JSONValue(parsing: body), let code = answer["code"].flatMap(integer) else { return nil }
        return switch code {
        case 1, 2, 3, 4, 16: "HEC code \(code): the token is missing, disabled or wrong; check token_file or token_credential"
        case 7: "HEC code 7: the index is not one this token may write to; check index (or the token's allowed indexes)"
        case 10, 11, 14:
            "HEC code \(code): the collector wants a data channel or acknowledgements that this sink does not use; turn indexer acknowledgement off for the token"
        default: nil
        }
    }

    static func invalidEventNumber(_ body: Data) -> Int? {
        guard let answer = try? JSONValue(parsing: body) else { return nil }
        return answer["invalid-event-number"].flatMap(integer)
    }

    static func integer(_ value: JSONValue) -> Int? {
        guard case .number(let text) = value else { return nil }
        return Int(text)
    }

    /// The start of a response body, printable, for messages.
    static func excerpt(_ body: Data) -> String {
        PrintableText.shown(bytes: body, limit: 300)
    }
}
