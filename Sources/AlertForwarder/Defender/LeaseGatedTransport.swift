import DefenderAPI

/// A tenant's API requests in a group: each is sent only while this daemon holds the tenant's
/// lease (``TenantLeases/holds(_:)``), checked just before it goes out. A daemon that was
/// paused or cut off, or is handing the tenant over, sends nothing more for it, so two daemons
/// never poll one tenant at the same time.
struct LeaseGatedTransport: HTTPTransport {
    let inner: any HTTPTransport
    let tenant: String
    let leases: TenantLeases

    func send(_ request: HTTPExchangeRequest, deadline: Duration) async throws(TransportError) -> HTTPExchangeResponse {
        guard leases.holds(tenant) else {
            throw .withheld("this daemon no longer holds the lease of tenant \(tenant); another member of the group polls it")
        }
        return try await inner.send(request, deadline: deadline)
    }
}
