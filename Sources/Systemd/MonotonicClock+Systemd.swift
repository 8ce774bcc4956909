import Foundation
import Timekeeping

extension MonotonicClock {
    /// `CLOCK_MONOTONIC` in microseconds, the time base systemd expects in `MONOTONIC_USEC=`.
    public static func systemMonotonicMicroseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000 + UInt64(spec.tv_nsec) / 1_000
    }
}
