import Foundation
import OrderedJSON
import Timekeeping

/// Injected faults: which request a fault answers, and the answer it gives in place of the real
/// one (a status, a malformed or foreign element spliced into a page, a stall, a 429 burst).
extension SimulatedDefender {
    /// An element for a fault that adds one, with a new id; `updated` names its update time
    /// (Graph calls it `lastUpdateDateTime`).
    func element(for kind: Fault.Kind, now: Timestamp, updated: String = "lastUpdateTime") -> Data {
        let id = "da\(now.dotNetTicks)_bad\(counters.faultsInjected)"
        let head = Data(#"{"id":"\#(id)","\#(updated)":"\#(now.description)","severity":"High","title":"#.utf8)
        switch kind {
        case .loneSurrogate: return head + Data(#""bad \udc00 title","status":"New"}"#.utf8)
        case .invalidUTF8: return head + Data("\"bad ".utf8) + Data([0xFF, 0xFE, 0xC0, 0x80]) + Data(#" title","status":"New"}"#.utf8)
        default:
            return head + Data(#""deep","nested":"#.utf8) + Data(repeating: UInt8(ascii: "["), count: 600)
                + Data(repeating: UInt8(ascii: "]"), count: 600) + Data("}".utf8)
        }
    }

    /// A fault's `Retry-After`: seconds, or the HTTP date that many seconds from now (rounded
    /// up to a whole second, as the format has no fraction).
    private static func retryAfter(_ fault: Fault, now: Timestamp) -> String {
        let seconds = fault.retryAfter ?? 30
        guard fault.retryAfterDate == true else { return String(seconds) }
        var time = time_t(now.ticks / 10_000_000 + 1 + Int64(seconds))
        var parts = tm()
        gmtime_r(&time, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"],
            months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return
            "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }

    /// `body` (an alerts page) with `element` first in its `value`.
    static func splice(_ element: Data, into body: Data) -> Data {
        guard let range = body.range(of: Data(#""value":["#.utf8)) else { return body }
        let rest = body[range.upperBound...]
        let separator = rest.first == UInt8(ascii: "]") ? Data() : Data(",".utf8)
        return body[..<range.upperBound] + element + separator + rest
    }

    /// The answer of the first active fault for `target` that fires, if any.
    func injectFault(for target: Fault.Target, request: SimulatorRequest) -> SimulatorOutcome? {
        let now = clock.now()
        if let until = burstRetryAfterUntil[target], until > now { counters.callsIgnoringRetryAfter += 1 }
        guard let fault = takeFault(for: target, where: { !$0.changesAnswer }) else { return nil }
        if fault.kind == .rateLimit {
            burstRetryAfterUntil[target] = now.adding(seconds: Double(fault.retryAfter ?? 30))
        }
        return Self.outcome(of: fault, target: target, request: request, now: now)
    }

    /// A token request's form asking for the other API's resource (Graph for WindowsDefenderATP
    /// and the reverse).
    static func otherResource(in body: Data) -> Data {
        let pairs = String(decoding: body, as: UTF8.self).split(separator: "&").map { pair -> String in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, ["scope", "resource"].contains(parts[0]),
                let value = parts[1].replacingOccurrences(of: "+", with: " ").removingPercentEncoding
            else { return String(pair) }
            let swapped =
                value.contains(Resource.graph)
                ? value.replacingOccurrences(of: Resource.graph, with: Resource.defender)
                : value.replacingOccurrences(of: Resource.defender, with: Resource.graph)
            return "\(parts[0])=\(swapped.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? swapped)"
        }
        return Data(pairs.joined(separator: "&").utf8)
    }

    /// The first active fault for `target` of the kinds asked for that fires, if any; uses up
    /// one of its count.
    func takeFault(for target: Fault.Target, where kind: (Fault.Kind) -> Bool) -> Fault? {
        for (index, fault) in faults.enumerated() where (fault.target == target || fault.target == .any) && kind(fault.kind) {
            if let probability = fault.probability, !random.chance(probability) { continue }
            if let count = fault.count {
                if count <= 1 { faults.remove(at: index) } else { faults[index].count = count - 1 }
            }
            counters.faultsInjected += 1
            return fault
        }
        return nil
    }

    private static func outcome(of fault: Fault, target: Fault.Target, request: SimulatorRequest, now: Timestamp) -> SimulatorOutcome {
        let ok = SimulatorResponse.json(200, .object([("value", .array([]))]))
        switch fault.kind {
        case .status:
            let status = fault.status ?? 503
            if target == .token {
                return SimulatorOutcome(
                    TokenEndpoint.error(
                        status, "temporarily_unavailable", nil, "The service is temporarily unavailable (simulated outage, HTTP \(status)).",
                        now: Timestamp(Date())))
            }
            // Documented: InternalServerError carries no message.
            return SimulatorOutcome(
                .apiError(
                    status, code: status >= 500 ? "InternalServerError" : "BadRequest",
                    message: status >= 500 ? "" : "Simulated failure (HTTP \(status))."))
        case .rateLimit:
            return SimulatorOutcome(
                .apiError(
                    429, code: "TooManyRequests", message: "Too many requests (simulated burst).",
                    headers: [("Retry-After", retryAfter(fault, now: now))]))
        case .delay:
            return SimulatorOutcome(ok, delivery: .delayed(.milliseconds(Int64((fault.seconds ?? 5) * 1000))))
        case .stall:
            return SimulatorOutcome(ok, delivery: .stall)
        case .truncated:
            return SimulatorOutcome(
                .json(200, .object([("@odata.context", .string("truncated")), ("value", .array((0..<50).map { .int($0) }))])), delivery: .truncated)
        case .invalidJSON:
            return SimulatorOutcome(
                SimulatorResponse(
                    status: 200, headers: [("Content-Type", "application/json; charset=utf-8")], body: Data("{\"value\": [{\"id\": \"da1\", ".utf8)))
        case .wrongContentType:
            return SimulatorOutcome(
                SimulatorResponse(
                    status: 200, headers: [("Content-Type", "text/html; charset=utf-8")],
                    body: Data("<html><body>Proxy login required</body></html>".utf8)))
        case .echo:
            if target == .token {
                // No AADSTS code: Entra ID does not do this; a stand-in or a proxy might.
                return SimulatorOutcome(
                    .json(
                        400,
                        .object([
                            ("error", .string("invalid_request")),
                            ("error_description", .string("Could not process the request: \(String(decoding: request.body, as: UTF8.self))")),
                        ])))
            }
            return SimulatorOutcome(
                .apiError(
                    400, code: "BadRequest",
                    message: "Bad request: GET \(request.path)?\(request.query) Authorization: \(request.header("Authorization") ?? "")"))
        case .loneSurrogate, .invalidUTF8, .deepNesting, .wrongAudience, .ignoreTop, .nextLinkLoop:
            return SimulatorOutcome(ok)  // never: these change a real answer
        }
    }
}
