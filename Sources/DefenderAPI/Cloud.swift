/// A Microsoft cloud in which a Defender for Endpoint tenant lives.
///
/// Each cloud has its own sign-in host and API host (see `docs/microsoft-apis.md`, §summary 4 and
/// [GOV]). The token audience stays the legacy `https://api.securitycenter.microsoft.com`
/// in the commercial cloud even when calling the newer host (a mismatch gives 403).
public enum Cloud: String, Sendable, CaseIterable {
    /// Worldwide commercial cloud.
    case commercial
    /// US Government Community Cloud (GCC): commercial sign-in, GCC API host.
    case gcc
    /// US Government GCC High.
    case gccHigh = "gcc-high"
    /// US Department of Defense.
    case dod
}

/// A regional Defender API host in the commercial cloud (a latency optimisation only).
public enum Region: String, Sendable, CaseIterable {
    case us, eu, uk, au, swa, ina, aea
}
