import Foundation

/// Reads `Retry-After` (delta-seconds or an HTTP date) and clamps absurd values.
public enum RetryAfter {
    /// Longest wait honoured; a larger value is clamped (and the caller logs it).
    public static let maximum: Duration = .seconds(3600)

    /// The wait, or `nil` when the header is missing or unreadable. `clamped` tells whether it
    /// was cut down to ``maximum`` (or up from a date in the past).
    public static func parse(_ value: String?, now: Double) -> (wait: Duration, clamped: Bool)? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        var seconds: Double
        if let number = Double(value), number.isFinite {
            seconds = number
        } else if let date = httpDate(value) {
            seconds = date - now
        } else {
            return nil
        }
        var clamped = false
        if seconds < 0 { seconds = 0; clamped = true }
        if seconds > 3600 { seconds = 3600; clamped = true }
        return (.milliseconds(Int64(seconds * 1000)), clamped)
    }

    /// Seconds since 1970 of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
    public static func httpDate(_ text: String) -> Double? {
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let parts = text.split(separator: " ")
        guard parts.count == 6, parts[5] == "GMT", let day = Int(parts[1]), let month = months.firstIndex(of: String(parts[2])),
            let year = Int(parts[3])
        else { return nil }
        let time = parts[4].split(separator: ":").compactMap { Int($0) }
        // Ranges checked before they become C ints (a fuzzer found a 11-digit day trapping).
        guard time.count == 3, (1...31).contains(day), (1...9999).contains(year), (0..<24).contains(time[0]), (0..<60).contains(time[1]),
            (0...60).contains(time[2])
        else { return nil }
        var components = tm()
        components.tm_year = Int32(year - 1900)
        components.tm_mon = Int32(month)
        components.tm_mday = Int32(day)
        components.tm_hour = Int32(time[0])
        components.tm_min = Int32(time[1])
        components.tm_sec = Int32(time[2])
        return Double(timegm(&components))
    }
}
