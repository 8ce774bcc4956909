/// Whole-unit views of `Duration`, for the places that hand durations to C, NIO, Dispatch,
/// systemd or the alert timestamps (100 ns ticks).
extension Duration {
    /// Whole nanoseconds, saturating at `Int64.max`.
    public var totalNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : product + attoseconds / 1_000_000_000
    }

    /// Whole milliseconds, for log fields.
    public var totalMilliseconds: Int64 { totalNanoseconds / 1_000_000 }

    /// In seconds, with fractions.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// Whole microseconds, never negative (systemd's `*_USEC` fields).
    public var wholeMicroseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) * 1_000_000 + UInt64(attoseconds / 1_000_000_000_000)
    }

    /// Seconds rounded to the nearest, for messages.
    public var roundedSeconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds + (attoseconds >= 500_000_000_000_000_000 ? 1 : 0)
    }

    /// In 100 ns ticks, the unit of ``Timestamp``.
    public var ticks: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 10_000_000 + attoseconds / 100_000_000_000
    }
}
