import DefenderAPI
import Dispatch
import Foundation
import Synchronization
import TestSupport
import Testing
import Timekeeping

/// Once a 429 is read, no request of that app and tenant is sent before its `Retry-After` has
/// run out, whichever task wants to send it (issue 23, item 5: requests counted by the budget
/// before a 429 came went out right after it).
@Suite struct RetryAfterGateTests {
    @Test func noRequestIsSentInsideARetryAfterWhicheverTaskSendsIt() async throws {
        // Eight tasks send requests as fast as the budget lets them; every fifth request is
        // answered 429 with `Retry-After: 2`. They run on one thread, one job at a time, so the
        // order in which the fake API sees requests is the order of the client's own steps: a
        // request that reaches it after a 429 was answered was checked against the budget after
        // that 429 was read, and must not go before the virtual clock has passed its end.
        let time = ManualClock()
        let api = ThrottlingAPI(clock: time, every: 5, retryAfterSeconds: 2)
        let client = fakeAPIClient(api, clock: time, budget: RateBudget(perMinute: 1_000_000, perHour: 1_000_000, clock: time.clock))
        await withTaskExecutorPreference(OneThreadExecutor()) {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        // probe() tries once: a 429 comes back as an error, and the task goes on.
                        for _ in 0..<25 { _ = try? await client.probe() }
                    }
                }
            }
        }
        let seen = api.seen
        #expect(seen.requests == 200)
        #expect(seen.throttled == 40)
        #expect(seen.sentAfterA429 > 150, "the test exercises requests after 429s")
        #expect(seen.insideRetryAfter.isEmpty, "sent inside a Retry-After, at \(seen.insideRetryAfter)")
    }

    @Test func aCallCountedBeforeA429IsHeldBackAndNoLongerCounted() async throws {
        let time = ManualClock()
        let budget = RateBudget(perMinute: 1, perHour: 100, clock: time.clock)
        let counted = try await budget.acquire()
        // Another request's 429 is read before this call went out.
        budget.pause(for: .seconds(2))
        #expect(budget.retryAfterRemaining() == .seconds(2))
        await budget.withdraw(counted)
        // Withdrawn, it no longer takes the minute's one place: the next call waits only for
        // the Retry-After (counted, it would have waited 60.5 s for the place).
        let call = try await budget.acquire()
        #expect(time.clock.now() == .seconds(2))
        #expect(call.waitedForRetryAfter == .seconds(2) && call.waitedForLimits == .zero)
        #expect(budget.retryAfterRemaining() == .zero)
    }
}

/// Runs every job of the tasks that prefer it on one thread, one after the other.
final class OneThreadExecutor: TaskExecutor {
    private let queue = DispatchQueue(label: "one-thread-executor")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }
}

/// The API on a virtual clock: every `every`th alerts request (the first included) is answered
/// 429 with `Retry-After`, the others at once with an empty page; tokens are issued at once.
/// A request is counted when it reaches the transport, that is when it is sent; one sent after
/// a 429 was answered and before that 429's `Retry-After` ran out is recorded.
final class ThrottlingAPI: HTTPTransport {
    struct Seen {
        var requests = 0
        var throttled = 0
        var until: Duration?
        var sentAfterA429 = 0
        var insideRetryAfter: [Duration] = []
    }

    private let clock: ManualClock
    private let every: Int
    private let retryAfterSeconds: Int
    private let state = Mutex(Seen())

    init(clock: ManualClock, every: Int, retryAfterSeconds: Int) {
        self.clock = clock
        self.every = every
        self.retryAfterSeconds = retryAfterSeconds
    }

    var seen: Seen { state.withLock { $0 } }

    func send(_ request: HTTPExchangeRequest, deadline: Duration) async throws(TransportError) -> HTTPExchangeResponse {
        if request.url.contains("/oauth2/") {
            return HTTPExchangeResponse(
                status: 200, headers: [("Content-Type", "application/json")],
                body: Data(#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"a.b.c"}"#.utf8))
        }
        let now = clock.clock.now()
        let (every, seconds) = (self.every, self.retryAfterSeconds)
        let throttled = state.withLock { seen -> Bool in
            if let until = seen.until {
                seen.sentAfterA429 += 1
                if now < until { seen.insideRetryAfter.append(now) }
            }
            seen.requests += 1
            guard seen.requests % every == 1 else { return false }
            seen.throttled += 1
            seen.until = max(seen.until ?? .zero, now + .seconds(seconds))
            return true
        }
        if throttled {
            return HTTPExchangeResponse(
                status: 429, headers: [("Content-Type", "application/json"), ("Retry-After", String(seconds))],
                body: Data(#"{"error":{"code":"TooManyRequests","message":"Too many requests.","target":"x"}}"#.utf8))
        }
        return HTTPExchangeResponse(status: 200, headers: [("Content-Type", "application/json")], body: Data(#"{"value":[]}"#.utf8))
    }
}
