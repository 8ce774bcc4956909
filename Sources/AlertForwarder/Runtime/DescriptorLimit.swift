import Foundation

/// The process's limit of open descriptors (`RLIMIT_NOFILE`, getrlimit(2)).
///
/// systemd starts a service with a soft limit of 1,024, kept low for programs that use
/// select(2), which cannot watch a descriptor above 1,023, and a far higher hard limit; its
/// manual asks programs that do not use select(2) to raise the soft limit to the hard one
/// themselves (systemd.exec(5), the `LimitNOFILE=` row of its table of resource limits:
/// https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html).
/// This daemon waits on descriptors through epoll (swift-nio) and poll(2), never select(2).
public enum DescriptorLimit {
    /// The soft and hard limits, or nil when they cannot be read.
    public static func current() -> (soft: UInt64, hard: UInt64)? {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }

    /// Raises the soft limit to the hard one (no call when they are equal already, as under
    /// the units' `LimitNOFILE=`). Returns the soft limit before and after, or nil when the
    /// limits cannot be read; a refusal (a seccomp filter, say) leaves it as it was.
    @discardableResult
    public static func raiseSoftLimit() -> (before: UInt64, after: UInt64)? {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        let before = UInt64(limit.rlim_cur)
        guard limit.rlim_cur < limit.rlim_max else { return (before, before) }
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 else { return (before, before) }
        return (before, UInt64(raised.rlim_cur))
    }
}
