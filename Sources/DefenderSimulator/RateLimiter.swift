import Timekeeping

/// Defender's documented limits, per app and tenant: 100 calls a minute and 1,500 an hour.
/// Over them, a call is answered 429 with `Retry-After`; a client that calls again before that
/// time has passed is counted as a violation (it ignored `Retry-After`).
struct RateLimiter {
    struct Key: Hashable {
        var tenantID: String
        var clientID: String
    }

    enum Decision: Equatable {
        case allowed
        /// Refused; `ignoredRetryAfter` when an earlier `Retry-After` was still running.
        case limited(retryAfterSeconds: Int, ignoredRetryAfter: Bool)
    }

    var perMinute: Int
    var perHour: Int
    private var calls: [Key: [Int64]] = [:]  // tick times of admitted calls, last hour
    private var blockedUntil: [Key: Int64] = [:]

    init(perMinute: Int, perHour: Int) {
        self.perMinute = perMinute
        self.perHour = perHour
    }

    mutating func admit(_ key: Key, now: Timestamp) -> Decision {
        let minute: Int64 = 60 * 10_000_000
        let hour = 60 * minute
        var history = calls[key, default: []].filter { $0 > now.ticks - hour }
        defer { calls[key] = history }

        if let until = blockedUntil[key], until > now.ticks {
            return .limited(retryAfterSeconds: Self.seconds(until - now.ticks), ignoredRetryAfter: true)
        }
        let lastMinute = history.filter { $0 > now.ticks - minute }
        var until: Int64?
        if lastMinute.count >= perMinute, let oldest = lastMinute.first { until = oldest + minute }
        if history.count >= perHour, let oldest = history.first { until = max(until ?? 0, oldest + hour) }
        if let until {
            blockedUntil[key] = until
            return .limited(retryAfterSeconds: Self.seconds(until - now.ticks), ignoredRetryAfter: false)
        }
        history.append(now.ticks)
        return .allowed
    }

    private static func seconds(_ ticks: Int64) -> Int {
        max(1, Int((ticks + 9_999_999) / 10_000_000))
    }
}
