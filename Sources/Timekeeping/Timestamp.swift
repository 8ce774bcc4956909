import Foundation

/// A UTC instant with 100 ns resolution, as Defender writes timestamps:
/// `2025-03-14T09:14:05.46Z`, with 0 to 7 fraction digits.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// 100 ns units since 1970-01-01T00:00:00Z.
    public var ticks: Int64
    /// How many fraction digits to write (0...7); trailing digits are truncated, never rounded.
    public var fractionDigits: Int

    /// The range an instant is kept in: years 0 to 9999 (all ISO 8601 writes with four
    /// digits), with room to spare. An instant from outside (a damaged state database, an
    /// infinite date) is clamped into it, so that no arithmetic or formatting on a timestamp
    /// can overflow.
    public static let representable: ClosedRange<Int64> = -700_000_000_000_000_000...2_600_000_000_000_000_000

    public init(ticks: Int64, fractionDigits: Int = 7) {
        self.ticks = min(max(ticks, Self.representable.lowerBound), Self.representable.upperBound)
        self.fractionDigits = max(0, min(7, fractionDigits))
    }

    /// The instant of a `Date`.
    public init(_ date: Date, fractionDigits: Int = 7) {
        // A date from outside (a stored schedule, a header) may be infinite or NaN: clamped.
        let ticks = (date.timeIntervalSince1970 * 10_000_000).rounded(.down)
        self.init(ticks: Int64(exactly: ticks) ?? (ticks > 0 ? Int64.max / 2 : ticks < 0 ? Int64.min / 2 : 0), fractionDigits: fractionDigits)
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.ticks < rhs.ticks }
    public static func == (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.ticks == rhs.ticks }
    public func hash(into hasher: inout Hasher) { hasher.combine(ticks) }

    /// The same instant written with `digits` fraction digits (the written value may then be
    /// earlier: the instant itself is truncated so that what is written is what is compared).
    public func writtenWith(_ digits: Int) -> Timestamp {
        let digits = max(0, min(7, digits))
        var unit: Int64 = 1
        for _ in 0..<(7 - digits) { unit *= 10 }
        let truncated = ticks - ((ticks % unit) + unit) % unit
        return Timestamp(ticks: truncated, fractionDigits: digits)
    }

    /// Moves by whole seconds (may be negative).
    public func adding(seconds: Double) -> Timestamp {
        let delta = (seconds * 10_000_000).rounded(.towardZero)
        return adding(ticks: Int64(exactly: delta) ?? (delta > 0 ? Int64.max : Int64.min))
    }

    /// Moves by 100 ns units; saturates at the ends of Int64 instead of trapping (a damaged
    /// state database may hold any watermark).
    public func adding(ticks: Int64) -> Timestamp {
        let (sum, overflow) = self.ticks.addingReportingOverflow(ticks)
        return Timestamp(ticks: overflow ? (ticks > 0 ? Int64.max : Int64.min) : sum, fractionDigits: fractionDigits)
    }

    public var date: Date { Date(timeIntervalSince1970: Double(ticks) / 10_000_000) }

    /// .NET ticks (since 0001-01-01), as in alert ids.
    public var dotNetTicks: Int64 { ticks + 621_355_968_000_000_000 }

    /// ISO 8601 with `Z` and `fractionDigits` digits.
    public var description: String {
        let seconds = ticks >= 0 ? ticks / 10_000_000 : (ticks - 9_999_999) / 10_000_000
        let fraction = ticks - seconds * 10_000_000
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        // Digits written by hand: String(format:) goes through Foundation's locale machinery.
        var text = ""
        text.reserveCapacity(28)
        func append(_ value: Int64, width: Int) {
            var digits = String(value)
            while digits.count < width { digits = "0" + digits }
            text += digits
        }
        append(Int64(parts.tm_year) + 1900, width: 4)
        text += "-"
        append(Int64(parts.tm_mon) + 1, width: 2)
        text += "-"
        append(Int64(parts.tm_mday), width: 2)
        text += "T"
        append(Int64(parts.tm_hour), width: 2)
        text += ":"
        append(Int64(parts.tm_min), width: 2)
        text += ":"
        append(Int64(parts.tm_sec), width: 2)
        if fractionDigits > 0 {
            text += "."
            var digits = String(fraction)
            while digits.count < 7 { digits = "0" + digits }
            text += digits.prefix(fractionDigits)
        }
        return text + "Z"
    }

    /// Parses `YYYY-MM-DDThh:mm:ss[.f{1,7}]Z` (the `Z` may be left out: OData literals are UTC).
    public init?(parsing text: some StringProtocol) {
        let characters = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= characters.count else { return nil }
            var value = 0
            for byte in characters[range] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard characters.count >= 19,
            let year = number(0..<4), characters[4] == UInt8(ascii: "-"),
            let month = number(5..<7), characters[7] == UInt8(ascii: "-"),
            let day = number(8..<10), characters[10] == UInt8(ascii: "T") || characters[10] == UInt8(ascii: "t"),
            let hour = number(11..<13), characters[13] == UInt8(ascii: ":"),
            let minute = number(14..<16), characters[16] == UInt8(ascii: ":"),
            let second = number(17..<19),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 60
        else { return nil }
        var index = 19
        var fraction: Int64 = 0
        var digits = 0
        if index < characters.count, characters[index] == UInt8(ascii: ".") {
            index += 1
            while index < characters.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(characters[index]) {
                guard digits < 7 else { return nil }
                fraction = fraction * 10 + Int64(characters[index] - UInt8(ascii: "0"))
                digits += 1
                index += 1
            }
            guard digits > 0 else { return nil }
        }
        if index < characters.count, characters[index] == UInt8(ascii: "Z") || characters[index] == UInt8(ascii: "z") { index += 1 }
        guard index == characters.count else { return nil }
        for _ in digits..<7 { fraction *= 10 }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let seconds = timegm(&parts)
        // Reject days that do not exist (timegm normalises 2025-02-30 to March).
        var check = seconds
        var back = tm()
        gmtime_r(&check, &back)
        guard back.tm_mday == Int32(day), back.tm_mon == Int32(month - 1) else { return nil }
        self.init(ticks: Int64(seconds) * 10_000_000 + fraction, fractionDigits: digits)
    }
}
