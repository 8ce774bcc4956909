import Foundation
import Logging
import OrderedJSON
import Synchronization
import Timekeeping

/// A bound of a `lastUpdateTime` window.
public enum WindowBound: Sendable, Equatable, CustomStringConvertible {
    case inclusive(Timestamp)
    case exclusive(Timestamp)

    /// The first 100 ns tick inside the bound.
    var firstTick: Int64 {
        switch self {
        case .inclusive(let time): time.ticks
        case .exclusive(let time): time.ticks + 1
        }
    }

    public var description: String {
        switch self {
        case .inclusive(let time): "≥ \(time.writtenWith(7))"
        case .exclusive(let time): "> \(time.writtenWith(7))"
        }
    }
}

/// An element of a page's `value` that is not an alert the daemon can read: not valid JSON
/// (the rest of the page is), or without an `id` or a valid `lastUpdateTime`.
public struct RejectedElement: Sendable, Equatable {
    /// The element's bytes exactly as they came.
    public var bytes: Data
    public var reason: String
    /// The bytes as text (invalid UTF-8 shown as U+FFFD).
    public var json: String { String(decoding: bytes, as: UTF8.self) }

    public init(bytes: Data, reason: String) {
        self.bytes = bytes
        self.reason = reason
    }
}

/// Alerts of one fully read sub-window, in time order of windows.
public struct AlertBatch: Sendable {
    public var alerts: [Alert]
    /// Array elements that are not alerts the daemon can read, kept for the caller to
    /// quarantine: the rest of the page goes on.
    public var rejected: [RejectedElement]
    /// The sub-window these alerts came from.
    public var lower: WindowBound
    public var upper: Timestamp?
    /// The server's clock when it answered (the response's `Date` header), if it said.
    public var serverTime: Timestamp?
    /// Whether the sub-window is now read completely. A Graph window read over several pages
    /// (its `@odata.nextLink` chain) is handed on page by page: only its last page completes
    /// it, so only then may the watermark move past what the earlier pages held.
    public var complete = true

    public init(alerts: [Alert], rejected: [RejectedElement], lower: WindowBound, upper: Timestamp?, serverTime: Timestamp?, complete: Bool = true) {
        self.alerts = alerts
        self.rejected = rejected
        self.lower = lower
        self.upper = upper
        self.serverTime = serverTime
        self.complete = complete
    }
}

/// Reads alerts from MDE's `GET /api/alerts` or Graph's `GET /v1.0/security/alerts_v2`.
///
/// Windows on the update time (`lastUpdateTime`, Graph's `lastUpdateDateTime`) are read with
/// `$top = pageSize`, each sized to be expected to fit one page.
///
/// MDE pages have no `@odata.nextLink`: a page that comes back full may hide more alerts, so
/// the window is split at a timestamp taken from that page (server time), never past the
/// middle of the window, and each part is read again, earlier part first. A window whose full
/// page shows a single timestamp is read as `eq` that instant, told apart by
/// `alertCreationTime`, then past it.
///
/// Graph says when there is more: a page with an `@odata.nextLink` is followed by the pages
/// of its chain, each link used exactly as given (``readChain(from:lower:upper:onBatch:)``).
///
/// Only completely read windows move the caller's watermark; batches come one page at a
/// time, so memory grows with one page, not with the backlog.
public struct AlertsClient: Sendable {
    public struct Settings: Sendable {
        public var pageSize: Int
        public var expandEvidence: Bool
        public var severities: [String]?
        public var statuses: [String]?
        /// Graph only: alerts of these `serviceSource`s.
        public var serviceSources: [String]?
        /// Deadline of one HTTP request.
        public var requestDeadline: Duration = .seconds(120)
        /// Attempts of one request on transient failures (5xx, timeouts, 429).
        public var attempts = 3
        public var retryBackoff = Backoff(base: .seconds(1), cap: .seconds(30))
        /// The priority of the calls in the rate budget (low for a reconciliation sweep).
        public var priority: RateBudget.Priority = .normal
        /// Alerts, or Graph's incidents (each with its alerts: `$expand=alerts`). The
        /// severity, status and service filters are the alerts'.
        public var kind: RecordKind = .alert

        public init(
            pageSize: Int = 1000, expandEvidence: Bool = true, severities: [String]? = nil, statuses: [String]? = nil,
            serviceSources: [String]? = nil
        ) {
            self.pageSize = pageSize
            self.expandEvidence = expandEvidence
            self.severities = severities
            self.statuses = statuses
            self.serviceSources = serviceSources
        }
    }

    private let endpoints: DefenderEndpoints
    private var settings: Settings
    private let tokens: TokenProvider
    private let transport: any HTTPTransport
    private let budget: RateBudget
    private let clock: MonotonicClock
    private let random: @Sendable () -> Double
    private let metrics: any APIObserver
    private let logger: Logger

    public init(
        endpoints: DefenderEndpoints, settings: Settings, tokens: TokenProvider, transport: any HTTPTransport,
        budget: RateBudget, clock: MonotonicClock = .continuous,
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }, metrics: any APIObserver = UnobservedAPI(), logger: Logger
    ) {
        self.metrics = metrics
        self.endpoints = endpoints
        self.settings = settings
        self.tokens = tokens
        self.transport = transport
        self.budget = budget
        self.clock = clock
        self.random = random
        self.logger = logger
    }

    /// The same client, its calls at `priority` in the rate budget.
    public func with(priority: RateBudget.Priority) -> AlertsClient {
        var client = self
        client.settings.priority = priority
        return client
    }

    /// The same client reading records of `kind`, in pages no larger than the API gives them.
    public func with(kind: RecordKind) -> AlertsClient {
        var client = self
        client.settings.kind = kind
        client.settings.pageSize = min(settings.pageSize, kind.maximumPageSize(endpoints.api))
        return client
    }

    /// Reads every alert with `lastUpdateTime` in the window, handing each fully read
    /// sub-window to `onBatch` in time order.
    ///
    /// Correctness never depends on the order of results: only a page that came back short
    /// (fewer than `pageSize`) proves that its window was read completely, and only such
    /// windows are handed on. Cost is kept low by sizing windows so they are expected to fit
    /// one page: the density of alerts (per 100 ns tick) in the last complete window gives the
    /// length of the next one (``windowTarget(pageSize:)`` alerts), so a uniform backlog costs
    /// about 1.1 requests per page instead of a full page read and thrown away for each one. An
    /// open window (up to now) is carved that way only up to the local clock's now, a hint
    /// that decides cost, never which alerts are read: the last window read is always open.
    ///
    /// Once the density is known, the next window's request is sent while a page is read and
    /// handed on (two requests in flight at most, batches still strictly in order): the wait
    /// for the server overlaps with parsing and storing instead of adding to it.
    ///
    /// An answer larger than the transport accepts (``DefenderHTTPClient/maximumResponseSize``)
    /// is not retried as it is: the rest of the window is read again with pages half as large
    /// (down to one alert), from the start of the last batch handed on, with a warning.
    ///
    /// - Parameters:
    ///   - lower: Where the window starts: the watermark minus the overlap, inclusive or not.
    ///   - upper: Where it ends (exclusive); `nil` for now, as a poll reads.
    ///   - now: The local wall clock (a hint for sizing windows, never for what is read).
    ///   - onBatch: Called with each window read completely, in time order; an error it throws
    ///     ends the fetch (what it was given stays handed on).
    /// - Throws: ``DefenderAPIError`` when a page cannot be read after its retries, or a window
    ///   cannot be proved read (the poll fails and the next one starts from the last batch).
    public func fetch(
        from lower: WindowBound, to upper: Timestamp? = nil, now: @Sendable () -> Date = { Date() },
        onBatch: (AlertBatch) async throws -> Void
    ) async throws {
        var client = self
        var start = lower
        while true {
            do {
                try await client.fetchWindows(from: start, to: upper, now: now) { batch in
                    try await onBatch(batch)
                    start = batch.lower
                }
                return
            } catch DefenderAPIError.transport(.bodyTooLarge(let limit)) where client.settings.pageSize > 1 {
                client.settings.pageSize /= 2
                logger.warning(
                    "an answer was larger than the most accepted; reading on with smaller pages",
                    metadata: [
                        "limit_bytes": "\(limit)", "page_size": "\(client.settings.pageSize)", "from": "\(start)",
                    ])
            }
        }
    }

    private func fetchWindows(
        from lower: WindowBound, to upper: Timestamp?, now: @Sendable () -> Date,
        onBatch: (AlertBatch) async throws -> Void
    ) async throws {
        let inFlight = RequestsInFlight()
        var plan = WindowPlan(from: lower, to: upper, pageSize: settings.pageSize)
        func clock() -> Timestamp { Timestamp(now()) }

        /// Sends the request for a window, first carved to the expected size.
        func request(_ low: WindowBound, _ high: Timestamp?, halve: Bool) -> WindowPlan.Request {
            let end = plan.end(of: low, high, halve: halve, now: clock)
            let filter = filter(low, end)
            logger.trace(
                "requesting a window",
                metadata: [
                    "window": "\(low) and < \(end.map { "\($0.writtenWith(7))" } ?? "now")",
                    "density_per_hour": "\(plan.density.map { $0 * 36_000_000_000 } ?? -1)",
                ])
            return WindowPlan.Request(low: low, end: end, halve: halve, id: inFlight.start { try await self.page(filter: filter, skip: 0) })
        }

        try await withTaskCancellationHandler {
            defer { inFlight.cancelAll() }
            while let work = plan.pending.popLast() {
                let current: WindowPlan.Request
                switch work {
                case .instant(let instant):
                    try await readInstant(instant, onBatch: onBatch)
                    continue
                case .requested(let request):
                    current = request
                case .window(let low, let high, let halve):
                    current = request(low, high, halve: halve)
                }
                // Before the density is measured the next window would most likely come back full.
                if plan.densityMeasured, case .window(let low, let high, let halve)? = plan.pending.last {
                    plan.pending.removeLast()
                    let ahead = request(low, high, halve: halve)
                    plan.pending.append(.requested(ahead))
                }
                let page: Page
                do {
                    page = try await inFlight.result(current.id)
                } catch let error as DefenderAPIError where Self.isOverfull(error) {
                    guard plan.halveOverfull(current, now: clock) else { throw error }
                    logger.warning(
                        "the API answered with more alerts than $top asked for; reading the window in halves",
                        metadata: ["window": "\(current)", "page_size": "\(settings.pageSize)"])
                    continue
                }
                if endpoints.api == .graph, page.nextLink != nil {
                    try await followChain(of: page, in: current, plan: &plan, now: clock, onBatch: onBatch)
                    continue
                }
                let count = page.alerts.count + page.rejected.count
                guard count >= settings.pageSize, endpoints.api == .mde else {
                    try await onBatch(
                        AlertBatch(
                            alerts: page.alerts, rejected: page.rejected, lower: current.low, upper: current.end,
                            serverTime: page.serverTime))
                    plan.learnDensity(current, count: count, earliest: page.alerts.lazy.map(\.lastUpdateTime.ticks).min())
                    continue
                }
                let inPageOrder = page.alerts.map(\.lastUpdateTime)
                let times = inPageOrder.sorted()
                guard !times.isEmpty else { throw DefenderAPIError.malformedResponse("a full page without a single usable alert") }
                let order = plan.measureFullPage(inPageOrder, times: times)
                logger.debug(
                    "full page: splitting the window",
                    metadata: ["window": "\(current)", "alerts": "\(times.count)", "order": "\(order.rawValue)"])
                try plan.splitFullPage(current, times: times, order: order, now: clock)
            }
        } onCancel: {
            inFlight.cancelAll()
        }
    }

    /// A Graph window answered with a `@odata.nextLink`: carved by its `@odata.count` when that
    /// is far more than a page, else its chain followed (one instant's however long) and the
    /// window read again in halves when the chain could not be read to its end.
    private func followChain(
        of page: Page, in current: WindowPlan.Request, plan: inout WindowPlan, now: () -> Timestamp,
        onBatch: (AlertBatch) async throws -> Void
    ) async throws {
        let windowEnd = current.end ?? now()
        let instant = windowEnd.ticks - current.low.firstTick <= 1
        if let total = page.count, total > Self.longestChain * settings.pageSize, !instant {
            plan.carveLongChain(current, total: total, times: page.alerts.map(\.lastUpdateTime.ticks), now: { windowEnd })
            return
        }
        let chain = try await readChain(
            from: page, lower: current.low, upper: current.end, longest: instant ? nil : Self.longestChain, onBatch: onBatch)
        if chain.complete {
            plan.learnDensity(current, count: chain.count, earliest: nil)
        } else {
            try plan.halveIncompleteChain(current, count: chain.count, now: { windowEnd })
        }
    }

    /// How many alerts a window is sized to hold: a little under a page, so that the chance
    /// variation of a steady rate rarely fills it (two standard deviations of a Poisson count:
    /// about one window in 40 comes back full and is split), between half and 90 % of a page.
    static func windowTarget(pageSize: Int) -> Int {
        let size = Double(pageSize)
        return max(1, Int(min(0.9 * size, max(0.5 * size, size - 2 * size.squareRoot()))))
    }

    /// A wait for the call budget at least this long is logged.
    static let waitWorthSaying: Duration = .seconds(5)

    /// The most pages of one Graph window followed by `@odata.nextLink`.
    static let longestChain = 10

    /// The most answers with more elements than `$top` one fetch reads its windows in halves
    /// for, before it gives up (an API that ignores `$top` and the filter alike).
    static let mostOverfullAnswers = 16

    /// The start of the message of an answer with more elements than `$top` asked for.
    static let overfullMessage = "more alerts than $top asked for"

    /// Whether the error is an answer with more elements than `$top` (a request not worth
    /// sending again as it was).
    static func isOverfull(_ error: DefenderAPIError) -> Bool {
        if case .malformedResponse(let text) = error { return text.hasPrefix(overfullMessage) }
        return false
    }

    /// Reads the rest of a Graph window whose first page (`first`) has an `@odata.nextLink`,
    /// following each link exactly as given, on the API's own host only (a link elsewhere
    /// would carry the access token there). Each page is handed on as it comes; the last one
    /// completes the window only when the pages held at least as many alerts as the first
    /// page's `@odata.count` said the window had. (Links page by offset: an alert that changes
    /// while the chain is read leaves the window, and the alert after it could slip past a
    /// page boundary unread; it would show as one alert too few.)
    ///
    /// Returns whether the window was read completely, and how many elements its pages held.
    /// A chain longer than `longest` pages (none for one instant, which cannot be cut
    /// smaller), one whose link the API refuses (400: an offset beyond what it pages), or one
    /// that came up short is not complete.
    func readChain(
        from first: Page, lower: WindowBound, upper: Timestamp?, longest: Int? = longestChain,
        onBatch: (AlertBatch) async throws -> Void
    ) async throws -> (complete: Bool, count: Int) {
        var ids = Set(first.alerts.map(\.id))
        var rejected = first.rejected.count
        var page = first
        var pages = 1
        /// Every link followed: one that comes again is a loop, never followed twice.
        var followed: Set<String> = []
        while true {
            var complete = page.nextLink == nil
            if complete, let expected = first.count, ids.count + rejected < expected {
                logger.warning(
                    "a window read by @odata.nextLink held fewer alerts than its @odata.count; reading it again in smaller parts",
                    metadata: [
                        "window": "\(lower) and < \(upper.map { "\($0.writtenWith(7))" } ?? "now")", "count": "\(expected)",
                        "read": "\(ids.count + rejected)",
                    ])
                complete = false
            }
            try await onBatch(
                AlertBatch(
                    alerts: page.alerts, rejected: page.rejected, lower: lower, upper: upper,
                    serverTime: page.serverTime, complete: complete))
            guard let link = page.nextLink else { return (complete, ids.count + rejected) }
            if let longest, pages >= longest {
                logger.notice(
                    "a window's @odata.nextLink chain is longer than a fetch follows; reading it in smaller parts instead",
                    metadata: ["pages": "\(longest)"])
                return (false, ids.count + rejected)
            }
            guard Self.sameOrigin(link, endpoints.listURL(settings.kind)) else {
                throw DefenderAPIError.malformedResponse(
                    "an @odata.nextLink points to another host than the API (\(Self.origin(of: link) ?? "not a URL")); it is not followed, the access token goes to the API only"
                )
            }
            // A link that points at itself (or back into its chain) would be followed for ever:
            // the window fails at once, like a malformed answer, and the next poll reads it again.
            guard followed.insert(link).inserted else {
                throw DefenderAPIError.malformedResponse(
                    "an @odata.nextLink repeats a link already followed in the same chain (a loop, after \(pages) pages); it is not followed again")
            }
            do {
                page = try await self.page(url: link)
            } catch {
                if Self.isOverfull(error) {
                    logger.warning(
                        "a page of an @odata.nextLink chain held more alerts than $top asked for; reading the window in smaller parts instead")
                    return (false, ids.count + rejected)
                }
                guard case .api(status: 400, let code, let message, _) = error else { throw error }
                logger.warning(
                    "the API refused its own @odata.nextLink; reading the window in smaller parts instead",
                    metadata: [
                        "code": "\(code ?? "")", "message": "\(message ?? "")",
                    ])
                return (false, ids.count + rejected)
            }
            pages += 1
            ids.formUnion(page.alerts.lazy.map(\.id))
            rejected += page.rejected.count
        }
    }

    /// `scheme://host:port` of a URL, lowercased, with the scheme's default port.
    static func origin(of url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(), let host = components.host?.lowercased()
        else {
            return nil
        }
        return "\(scheme)://\(host):\(components.port ?? (scheme == "https" ? 443 : 80))"
    }

    static func sameOrigin(_ link: String, _ url: String) -> Bool {
        guard let a = origin(of: link), let b = origin(of: url) else { return false }
        return a == b
    }

    /// One `GET /api/alerts?$top=1` (Graph: `alerts_v2?$top=1`) without a filter: does the API
    /// accept us at all? Returns how many alerts came back (0 or 1).
    public func probe() async throws(DefenderAPIError) -> Int {
        var probing = self
        probing.settings.pageSize = 1
        probing.settings.expandEvidence = false
        probing.settings.attempts = 1
        return try await probing.requestPage(url: endpoints.listURL(settings.kind) + "?$top=1").alerts.count
    }

    /// Every alert at exactly `instant`. More than a page of them share it: they are told apart
    /// by `alertCreationTime` (filterable, and nearly always different), split at the median of
    /// each full page's creation times, so that each part holds fewer alerts than the whole by
    /// half a page whatever the order of results. Only alerts that share the creation time too
    /// are paged with `$skip`, which is safe only if the API keeps its order between requests
    /// (it promises none): that is logged as a warning.
    private func readInstant(_ instant: Timestamp, onBatch: (AlertBatch) async throws -> Void) async throws {
        /// A range of `alertCreationTime`, unbounded where nil; or one creation time, paged.
        enum Part {
            case range(WindowBound?, Timestamp?)
            case paged(Timestamp)
        }
        var pending: [Part] = [.range(nil, nil)]
        var seen: Set<String> = []
        let updated = "\(endpoints.api.updateTimeMember) eq \(Self.literal(instant))"
        func hand(_ page: Page) async throws {
            let fresh = page.alerts.filter { seen.insert($0.id).inserted }
            try await onBatch(
                AlertBatch(
                    alerts: fresh, rejected: page.rejected, lower: .inclusive(instant), upper: instant.adding(ticks: 1),
                    serverTime: page.serverTime))
        }
        while let part = pending.popLast() {
            switch part {
            case .paged(let created):
                logger.warning(
                    "more than a page of alerts share one lastUpdateTime and one alertCreationTime: reading them with $skip, which relies on the API returning them in the same order on every request",
                    metadata: [
                        "last_update_time": "\(instant.writtenWith(7))", "alert_creation_time": "\(created.writtenWith(7))",
                    ])
                let filter = "\(updated) and alertCreationTime eq \(Self.literal(created))" + extraFilters
                var skip = 0
                while true {
                    let page = try await self.page(filter: filter, skip: skip)
                    try await hand(page)
                    if page.alerts.count + page.rejected.count < settings.pageSize { break }
                    skip += settings.pageSize
                }
            case .range(let low, let high):
                var filter = updated
                switch low {
                case .inclusive(let time)?: filter += " and alertCreationTime ge \(Self.literal(time))"
                case .exclusive(let time)?: filter += " and alertCreationTime gt \(Self.literal(time))"
                case nil: break
                }
                if let high { filter += " and alertCreationTime lt \(Self.literal(high))" }
                let page = try await self.page(filter: filter + extraFilters, skip: 0)
                guard page.alerts.count + page.rejected.count >= settings.pageSize else {
                    try await hand(page)
                    continue
                }
                let created = page.alerts.compactMap(\.creationTime).sorted()
                guard created.count == page.alerts.count, let first = created.first, let last = created.last else {
                    throw DefenderAPIError.malformedResponse(
                        "more than a page of alerts share lastUpdateTime \(instant.writtenWith(7)) and some have no valid alertCreationTime to tell them apart"
                    )
                }
                if first == last {
                    // Later parts first on the stack: the earliest is read first.
                    pending.append(.range(.exclusive(first), high))
                    pending.append(.paged(first))
                    if low != .inclusive(first) { pending.append(.range(low, first)) }
                    continue
                }
                var split = created[created.count / 2]
                if split == first { split = created.first { $0 > first } ?? last }
                pending.append(.range(.inclusive(split), high))
                pending.append(.range(low, split))
            }
        }
    }

    // MARK: One request

    struct Page {
        var alerts: [Alert]
        var rejected: [RejectedElement]
        var serverTime: Timestamp?
        /// Graph: the link to the next page of the same query, as the API wrote it.
        var nextLink: String?
        /// Graph: how many alerts the whole query matches (`@odata.count`), when asked for.
        var count: Int?
    }

    /// `GET /api/alerts?$filter=...&$top=...&$skip=...[&$expand=evidence]`, or Graph's
    /// `GET /v1.0/security/alerts_v2?$filter=...&$top=...&$count=true`.
    private func page(filter: String, skip: Int) async throws(DefenderAPIError) -> Page {
        var query = "$filter=\(PercentEncoding.encode(filter))&$top=\(settings.pageSize)"
        if skip > 0 { query += "&$skip=\(skip)" }
        switch endpoints.api {
        case .mde: if settings.expandEvidence { query += "&$expand=evidence" }
        case .graph: query += "&$count=true"  // evidence is always there
        }
        if settings.kind == .incident { query += "&$expand=alerts" }
        return try await page(url: endpoints.listURL(settings.kind) + "?" + query)
    }

    /// One page, with retries of transient failures and one token renewal after a 401.
    private func page(url: String) async throws(DefenderAPIError) -> Page {
        var attempt = 0
        while true {
            do {
                return try await requestPage(url: url)
            } catch {
                attempt += 1
                // An answer with more elements than `$top` would come again: not retried as it was.
                guard error.isTransient, !Self.isOverfull(error), attempt < settings.attempts else { throw error }
                var wait = settings.retryBackoff.delay(attempt: attempt - 1, unit: random())
                if case .rateLimited(let retryAfter) = error { wait = max(wait, retryAfter) }
                logger.warning("alerts request failed; retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                do { try await clock.sleep(wait) } catch { throw .cancelled("while waiting to retry") }
                if case .rateLimited = error, settings.priority == .normal { metrics.waited(forRetryAfter: wait) }
            }
        }
    }

    /// The headers of a page request: Graph is asked for enum values newer than the API
    /// version (a new severity or service arrives as it is, not as `unknownFutureValue`).
    private var headers: [(String, String)] {
        switch endpoints.api {
        case .mde: [("Accept", "application/json")]
        case .graph: [("Accept", "application/json"), ("Prefer", "include-unknown-enum-members")]
        }
    }

    private func requestPage(url: String) async throws(DefenderAPIError) -> Page {
        var renewed = false
        while true {
            let token: AccessToken
            do { token = try await tokens.token() } catch { throw .token(error) }
            // A long wait is said, never silent: with the hourly budget used up, polling stops
            // for up to an hour.
            let logger = self.logger
            let priority = settings.priority
            let budget = self.budget
            func acquire() async throws(DefenderAPIError) -> RateBudget.Call {
                do {
                    return try await budget.acquire(priority: priority) { wait, limit in
                        guard wait >= Self.waitWorthSaying, priority == .normal else { return }
                        logger.log(
                            level: wait >= .seconds(120) ? .notice : .info, "waiting for the call budget before the next alerts request",
                            metadata: ["limit": "\(limit)", "wait_seconds": "\(wait.components.seconds)"])
                    }
                } catch {
                    throw .cancelled("while waiting for the rate budget")
                }
            }
            var call = try await acquire()
            var waited = (retryAfter: call.waitedForRetryAfter, limits: call.waitedForLimits)
            // A 429 read by another request of this app and tenant after this call was counted:
            // it is not sent before that Retry-After has run out. The check and the send below
            // have nothing awaited between them (a 429 is recorded the moment it is read).
            while budget.retryAfterRemaining() > .zero {
                await budget.withdraw(call)
                call = try await acquire()
                waited.retryAfter += call.waitedForRetryAfter
                waited.limits += call.waitedForLimits
            }
            let response: HTTPExchangeResponse
            do {
                response = try await transport.send(
                    HTTPExchangeRequest(method: "GET", url: url, headers: headers, bearer: token.value),
                    deadline: settings.requestDeadline)
            } catch {
                await budget.answered(call)
                metrics.request(endpoint: settings.kind.plural, status: nil)
                throw .transport(error)
            }
            // Before anything else: no other request of this app and tenant goes out from now on.
            let retryAfter = response.status == 429 ? RetryAfter.parse(response.header("Retry-After"), now: Date().timeIntervalSince1970) : nil
            if response.status == 429 { budget.pause(for: retryAfter?.wait ?? .seconds(60)) }
            await budget.answered(call)
            metrics.request(endpoint: settings.kind.plural, status: response.status)
            // A sweep's waits are its own choice, not a sign of throttling.
            if priority == .normal {
                metrics.waited(forRetryAfter: waited.retryAfter)
                metrics.waited(forBudget: waited.limits)
            }
            switch response.status {
            case 200:
                return try Self.parsePage(response, limit: settings.pageSize, api: endpoints.api, kind: settings.kind)
            case 401 where !renewed:
                logger.notice("the API refused the access token (401); renewing it once")
                await tokens.invalidate(token)
                renewed = true
                continue
            case 429:
                metrics.throttled()
                let wait = retryAfter?.wait ?? .seconds(60)
                if retryAfter?.clamped == true {
                    logger.warning(
                        "Retry-After clamped",
                        metadata: ["retry_after": "\(response.header("Retry-After") ?? "")", "used_seconds": "\(wait.components.seconds)"])
                }
                throw .rateLimited(retryAfter: wait)
            default:
                let body = try? JSONValue(parsing: response.body)
                // Text from the server: masked (it may echo the request) and cut short.
                func text(_ value: JSONValue?, limit: Int = 500) -> String? {
                    value?.stringValue.map { String(SecretRedaction.redact($0, also: [token.value]).prefix(limit)) }
                }
                // The request's id for Microsoft support: MDE's `target`, Graph's `innerError`.
                let error = body?["error"]
                throw .api(
                    status: response.status, code: text(error?["code"], limit: 100), message: text(error?["message"]),
                    correlationID: text(error?["innerError"]?["request-id"] ?? error?["target"], limit: 100))
            }
        }
    }

    /// The alerts of a response, from one validating pass over its bytes: nothing is admitted
    /// unless the whole body is valid JSON, and each alert keeps its original bytes.
    static func parsePage(
        _ response: HTTPExchangeResponse, limit: Int = 10_000, api: AlertsAPI = .mde,
        kind: RecordKind = .alert
    ) throws(DefenderAPIError) -> Page {
        let contentType = response.header("Content-Type") ?? ""
        guard contentType.lowercased().contains("json") else {
            throw .malformedResponse("content type \"\(contentType)\" instead of JSON (a proxy or captive portal answering?)")
        }
        let parsed: Result<Page, DefenderAPIError> = response.body.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            var scanner = JSONScanner(bytes)
            let elements: [JSONScanner.Element]
            let document: JSONScanner.Document
            do throws(JSONParseError) {
                // No more than asked for ($top): a body of countless tiny elements is refused
                // before it costs memory.
                document = try scanner.document(
                    arrayMember: "value", collecting: Alert.decodedMembers(api, kind), limit: limit,
                    members: ["@odata.nextLink", "@odata.count"])
                guard let found = document.elements else { return .failure(.malformedResponse("no \"value\" array in the response")) }
                elements = found
            } catch {
                if error.reason == "more than \(limit) elements" {
                    return .failure(.malformedResponse("\(Self.overfullMessage) (\(limit); \(bytes.count) bytes)"))
                }
                return .failure(.malformedResponse("\(error) (\(bytes.count) bytes; truncated?)"))
            }
            var page = Page(
                alerts: [], rejected: [],
                serverTime: response.header("Date").flatMap(RetryAfter.httpDate).map {
                    Timestamp(Date(timeIntervalSince1970: $0))
                })
            if api == .graph {
                page.nextLink = document.members[0].flatMap { scanner.string(at: $0) }
                page.count = document.members[1].flatMap { scanner.number(at: $0) }.flatMap { Int($0) }
                if document.members[0] != nil, page.nextLink?.isEmpty ?? true {
                    return .failure(.malformedResponse("@odata.nextLink is not a link"))
                }
            }
            page.alerts.reserveCapacity(elements.count)
            for element in elements {
                do throws(DefenderAPIError) {
                    if let problem = element.problem { throw .malformedResponse("an element of value is not valid JSON: \(problem)") }
                    page.alerts.append(try Alert(element, in: scanner, body: response.body, api: api, kind: kind))
                } catch {
                    page.rejected.append(RejectedElement(bytes: Data(UnsafeBufferPointer(rebasing: bytes[element.range])), reason: error.description))
                }
            }
            return .success(page)
        }
        return try parsed.get()
    }

    // MARK: Queries

    /// The `$filter` of a window plus the configured severity and status filters.
    func filter(_ lower: WindowBound, _ upper: Timestamp?) -> String {
        var parts: [String] = []
        switch lower {
        case .inclusive(let time): parts.append("\(endpoints.api.updateTimeMember) ge \(Self.literal(time))")
        case .exclusive(let time): parts.append("\(endpoints.api.updateTimeMember) gt \(Self.literal(time))")
        }
        if let upper { parts.append("\(endpoints.api.updateTimeMember) lt \(Self.literal(upper))") }
        return parts.joined(separator: " and ") + extraFilters
    }

    private var extraFilters: String {
        var text = ""
        guard settings.kind == .alert else { return text }
        for (name, values) in [("severity", settings.severities), ("status", settings.statuses), ("serviceSource", settings.serviceSources)] {
            guard let values, !values.isEmpty else { continue }
            let alternatives = values.map { "\(name) eq '\($0.replacingOccurrences(of: "'", with: "''"))'" }
            text += " and (" + alternatives.joined(separator: " or ") + ")"
        }
        return text
    }

    /// An OData datetime literal with 7 fraction digits.
    static func literal(_ time: Timestamp) -> String {
        time.writtenWith(7).description
    }
}

/// The page requests of one `fetch` that were sent and not yet read, so that all of them are
/// cancelled when the fetch ends early (an error, or its task cancelled).
private final class RequestsInFlight: Sendable {
    private struct State {
        var next = 0
        var tasks: [Int: Task<AlertsClient.Page, any Error>] = [:]
        var cancelled = false
    }

    private let state = Mutex(State())

    /// Starts a request; returns its number. One started after ``cancelAll()`` is cancelled at once.
    func start(_ operation: @escaping @Sendable () async throws -> AlertsClient.Page) -> Int {
        let task = Task(operation: operation)
        let (id, cancelled) = state.withLock { state in
            state.next += 1
            if !state.cancelled { state.tasks[state.next] = task }
            return (state.next, state.cancelled)
        }
        if cancelled { task.cancel() }
        return id
    }

    /// Waits for a request's page (and forgets the request).
    func result(_ id: Int) async throws -> AlertsClient.Page {
        guard let task = state.withLock({ $0.tasks.removeValue(forKey: id) }) else { throw CancellationError() }
        return try await withTaskCancellationHandler {
            try await task.value
        } onCancel: {
            task.cancel()
        }
    }

    func cancelAll() {
        let tasks = state.withLock { state in
            defer { state.tasks = [:]; state.cancelled = true }
            return Array(state.tasks.values)
        }
        for task in tasks { task.cancel() }
    }
}
