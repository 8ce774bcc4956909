import Timekeeping

/// What one fetch (``AlertsClient``) still has to read, and what it knows of the density of
/// alerts in time: the windows left (a stack, the earliest on top, so batches come in time
/// order), how each is sized before it is requested, and how one that came back full, overfull
/// or as a long chain of pages is cut. No I/O: the client sends the requests and hands each
/// answer here.
///
/// Whatever the API does, every part is smaller than the window it was cut from, so a fetch
/// always progresses; a window is only ever proved read by an answer shorter than a page.
struct WindowPlan {
    enum Work {
        /// A window; `halve` after a full page of its parent that was itself split.
        case window(WindowBound, Timestamp?, halve: Bool)
        case instant(Timestamp)
        /// A window whose request is already on its way.
        case requested(Request)
    }

    struct Request: CustomStringConvertible {
        var low: WindowBound
        var end: Timestamp?
        var halve: Bool
        var id: Int

        /// The window, for logs: `≥ 2026-12-07T06:00:00.0000000Z and < now`.
        var description: String { "\(low) and < \(end.map { "\($0.writtenWith(7))" } ?? "now")" }
    }

    /// How a full page was ordered (which decides only what the next request costs).
    enum PageOrder: String {
        case oldestFirst = "oldest first"
        case newestFirst = "newest first"
        case unordered
    }

    let pageSize: Int
    /// How many alerts a window is sized to hold (``AlertsClient/windowTarget(pageSize:)``).
    let target: Int
    var pending: [Work]
    /// Alerts per tick, once known or guessed.
    var density: Double?
    /// Whether `density` was measured (a window read completely, or a page of alerts in time
    /// order), not guessed: only then is the next window requested ahead.
    var densityMeasured = false
    /// Answers with more elements than `$top` met so far.
    var overfull = 0

    init(from lower: WindowBound, to upper: Timestamp?, pageSize: Int) {
        self.pageSize = pageSize
        target = AlertsClient.windowTarget(pageSize: pageSize)
        pending = [.window(lower, upper, halve: false)]
    }

    /// Where a window about to be requested ends: carved to the expected size when the density
    /// is known (the rest goes on top of `pending`); the earlier part of a split (`halve`) is
    /// sized by the split already.
    mutating func end(of low: WindowBound, _ high: Timestamp?, halve: Bool, now: () -> Timestamp) -> Timestamp? {
        guard let density, !halve else { return high }
        let carve = Timestamp(ticks: low.firstTick + max(1, Int64(min(Double(Int64.max / 4), Double(target) / density))))
        guard carve < (high ?? now()) else { return high }
        pending.append(.window(.inclusive(carve), high, halve: false))
        return carve
    }

    /// An answer with more elements than `$top` (the API ignored it): the same request would
    /// bring the same answer, so the window is read again in halves, which hold fewer alerts
    /// whatever the API does with `$top`. False when it cannot be (an instant cannot be cut
    /// smaller) or should not be any more (a fetch that keeps meeting such answers gives up).
    mutating func halveOverfull(_ current: Request, now: () -> Timestamp) -> Bool {
        overfull += 1
        let length = (current.end ?? now()).ticks - current.low.firstTick
        guard overfull <= AlertsClient.mostOverfullAnswers, length > 1 else { return false }
        density = max(density ?? 0, Double(pageSize + 1) / Double(length))
        halve(current, at: Timestamp(ticks: current.low.firstTick + length / 2))
        return true
    }

    /// A window read completely (`count` alerts) tells the density of alerts.
    mutating func learnDensity(_ current: Request, count: Int, earliest: Int64?) {
        guard let end = current.end else { return }
        // Measured from the window's first alert when there are enough of them (a quiet
        // stretch before a backlog would dilute it); the next window at most 4 times as long as
        // this one (an empty one says little).
        var start = current.low.firstTick
        if count >= 16, let earliest { start = max(start, earliest) }
        let length = Double(max(1, end.ticks - start))
        let found = Double(count) / length
        let bound = Double(target) / (4 * Double(end.ticks - current.low.firstTick))
        if count >= 16 {
            density = max(found, bound)
            densityMeasured = true
        } else if densityMeasured, let measured = density {
            // A handful of alerts, or none, bounds the density more than it measures it: a
            // quiet part of a split (the time before a backlog) leaves the measured density as
            // it is; after a window carved by it, the next window is at most 4 times as long
            // (the rate fell).
            density = current.halve ? measured : max(found, measured / 4)
        } else {
            density = max(found, bound)
        }
    }

    /// A Graph window far larger than a page (the first one of a backlog, sized before the
    /// density was known), `total` alerts by its `@odata.count`: not followed to the end of a
    /// long chain (deep offsets, one failure away from starting over) but carved into windows
    /// of a page each by the density the count gives. `times`: the first page's alerts, in the
    /// order answered.
    mutating func carveLongChain(_ current: Request, total: Int, times inPageOrder: [Int64], now: () -> Timestamp) {
        let windowEnd = current.end ?? now()
        // Where the window's alerts begin, as the first page suggests (a cost, never a loss:
        // the part before is read too, in one request): at its earliest alert when it holds the
        // oldest ones or a sample of all of them; when it holds the newest, as far back as
        // `@odata.count` alerts reach at the density they show.
        let times = inPageOrder.sorted()
        var begin = times.first ?? current.low.firstTick
        if let first = times.first, let last = times.last, last > first, inPageOrder.reversed().elementsEqual(times) {
            let run = Double(times.count) / Double(last - first)
            begin = last - Int64(min(Double(last - current.low.firstTick), Double(total) / run))
        }
        if begin > current.low.firstTick, begin < windowEnd.ticks {
            density = Double(total) / Double(max(1, windowEnd.ticks - begin))
            densityMeasured = true
            halve(current, at: Timestamp(ticks: begin))
        } else {
            density = max(density ?? 0, Double(total) / Double(max(1, windowEnd.ticks - current.low.firstTick)))
            pending.append(.window(current.low, current.end, halve: false))
        }
    }

    /// A Graph window whose chain of pages could not be followed to its end (`count` read): what
    /// was read is stored (read again, it is a duplicate, never sent twice) and the window is
    /// read again in halves. One instant cannot be halved: the poll fails, loudly, and the next
    /// one reads it again.
    mutating func halveIncompleteChain(_ current: Request, count: Int, now: () -> Timestamp) throws(DefenderAPIError) {
        let windowEnd = current.end ?? now()
        let length = windowEnd.ticks - current.low.firstTick
        density = max(density ?? 0, Double(count) / Double(max(1, length)))
        guard length > 1 else {
            throw DefenderAPIError.malformedResponse(
                "the alerts of \(current.low) could not be read completely by @odata.nextLink (fewer than @odata.count, or a link refused); the next poll reads them again"
            )
        }
        halve(current, at: Timestamp(ticks: current.low.firstTick + length / 2))
    }

    /// How a full page was ordered; in time order, oldest or newest first, the page is a run of
    /// the window's alerts whose density it measures; in any other order it is a sample of the
    /// window's alerts, whose spread it shows but not their number. `times`: its alerts, sorted.
    mutating func measureFullPage(_ inPageOrder: [Timestamp], times: [Timestamp]) -> PageOrder {
        let order: PageOrder =
            inPageOrder.elementsEqual(times) ? .oldestFirst : inPageOrder.reversed().elementsEqual(times) ? .newestFirst : .unordered
        if order != .unordered, let first = times.first, let last = times.last, last > first {
            density = Double(times.count) / Double(last.ticks - first.ticks)
            densityMeasured = true
        }
        return order
    }

    /// A full page of an MDE window (`times`: its alerts, sorted, at least one): the window is
    /// cut where the page suggests the earlier part fits. The parts go on top of a request sent
    /// ahead: they come before it.
    mutating func splitFullPage(_ current: Request, times: [Timestamp], order: PageOrder, now: () -> Timestamp) throws(DefenderAPIError) {
        let first = times[0], last = times[times.count - 1]
        if first == last {
            pending.append(.window(.exclusive(first), current.end, halve: false))
            pending.append(.instant(first))
            if current.low != .inclusive(first) { pending.append(.window(current.low, first, halve: false)) }
            return
        }
        let start = current.low.firstTick
        let end = current.end?.ticks ?? max(now().ticks, last.ticks + 1)
        // Oldest first, at 85 % of its alerts (halving when that part came back full too); in
        // no order, at the 32nd part of its alerts: that part is then read completely (its
        // density measured) unless the window holds 32 pages or more, in which case it is 32
        // times smaller. Unless oldest first, never later than the middle of the window's time
        // range: a page of the newest alerts would leave the earlier part almost as full as the
        // whole; newest first, the later half is then carved by the density the page measured,
        // and the earlier half read whole (often the quiet time before a backlog: one request).
        // Both parts are smaller than the window (the split is after its first alert and at
        // most its last): progress whatever the order.
        let ascending = order == .oldestFirst
        let fraction = ascending ? (current.halve ? 0.5 : 0.85) : 1.0 / 32
        var split = times[min(times.count - 1, Int(Double(times.count) * fraction))]
        if split == first { split = times.first { $0 > first } ?? last }
        let middle = Timestamp(ticks: start + (end - start) / 2)
        if !ascending, middle.ticks > start, middle < split { split = middle }
        // An answer whose alerts lie outside the window asked for (an API that ignored the
        // filter) must not put the split outside it: the parts would not shrink.
        if split.ticks <= start || split.ticks >= end { split = middle }
        guard middle.ticks > start else {
            throw DefenderAPIError.malformedResponse(
                "a full page for a window too short to split (\(current.low) to \(Timestamp(ticks: end))): the alerts answered lie outside the filter asked for"
            )
        }
        halve(current, at: split)
    }

    /// The window read again as two parts, the earlier (on top) ending at `split`.
    private mutating func halve(_ current: Request, at split: Timestamp) {
        pending.append(.window(.inclusive(split), current.end, halve: false))
        pending.append(.window(current.low, split, halve: true))
    }
}
