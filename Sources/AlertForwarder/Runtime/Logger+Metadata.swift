import Logging

extension Logger {
    /// This logger with the metadata `key` set to `value`. One that says so already is
    /// returned as it is, sharing its metadata: a daemon of 10,000 tenants hands each tenant's
    /// logger to its clients, token cache and pollers, and a copy of the metadata for each costs
    /// hundreds of bytes a tenant.
    func with(_ key: String, _ value: String) -> Logger {
        if case .string(value) = self[metadataKey: key] { return self }
        var logger = self
        logger[metadataKey: key] = .string(value)
        return logger
    }
}
