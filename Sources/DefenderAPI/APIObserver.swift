/// What the API clients report as they work (requests, throttling, waits, token requests):
/// the daemon counts it in its metrics (`TenantMetrics` in AlertForwarder), and a client made
/// without one reports to nobody. The clients know nothing of the metrics registry.
public protocol APIObserver: Sendable {
    /// An HTTP request to `endpoint` (`alerts`, `incidents`, `token`) ended with `status`, or
    /// with no answer.
    func request(endpoint: String, status: Int?)
    /// The API answered 429.
    func throttled()
    /// A poll waited `wait` for the API's `Retry-After`.
    func waited(forRetryAfter wait: Duration)
    /// A poll waited `wait` for the rate budget.
    func waited(forBudget wait: Duration)
    /// A token request ended; `failure` is nil when it succeeded, else its AADSTS code (nil
    /// inside when there was none).
    func tokenRequest(failure: Int??)
}

extension APIObserver {
    func tokenRequest() { tokenRequest(failure: nil) }
}

/// Reports to nobody.
public struct UnobservedAPI: APIObserver {
    public init() {}
    public func request(endpoint: String, status: Int?) {}
    public func throttled() {}
    public func waited(forRetryAfter wait: Duration) {}
    public func waited(forBudget wait: Duration) {}
    public func tokenRequest(failure: Int??) {}
}
