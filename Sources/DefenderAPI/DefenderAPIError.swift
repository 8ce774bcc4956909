/// Why an alerts request failed.
public enum DefenderAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The API answered with an error: status, `error.code`, message and correlation id (`target`).
    case api(status: Int, code: String?, message: String?, correlationID: String?)
    /// Throttled: wait `retryAfter` before the next call.
    case rateLimited(retryAfter: Duration)
    /// No token could be had.
    case token(TokenError)
    /// No HTTP answer (timeout, connection, TLS).
    case transport(TransportError)
    /// An answer that is not what the API sends: truncated, not JSON, wrong shape or type.
    case malformedResponse(String)
    /// The caller's task was cancelled (a stop, a reload) while the call waited: not a fault of
    /// the API or the network, and never retried.
    case cancelled(String)

    /// Whether waiting and retrying can help.
    public var isTransient: Bool {
        switch self {
        case .api(let status, _, _, _): status >= 500 || status == 408
        // An answer too large is as large again: smaller pages are the remedy, not a retry.
        case .transport(.bodyTooLarge): false
        // Withheld by the caller's own rule: sending it again would be withheld again.
        case .transport(.withheld): false
        case .rateLimited, .transport, .malformedResponse: true
        case .token(let error): error.kind == .transient
        case .cancelled: false
        }
    }

    public var description: String {
        switch self {
        case .api(let status, let code, let message, let correlation):
            var text = "Defender API error HTTP \(status)"
            if let code { text += " \(code)" }
            if let message, !message.isEmpty { text += ": \(message)" }
            if let correlation { text += " (correlation id \(correlation))" }
            switch status {
            case 401: text += ". Fix: the token was refused; check tenant_id and that the app belongs to this tenant."
            case 403:
                text +=
                    ". Fix: grant the application permission Alert.Read.All on WindowsDefenderATP and an admin consent; check cloud (the token audience must match)."
            default: break
            }
            return text
        case .rateLimited(let wait): return "Defender API rate limit reached; retry after \(wait.components.seconds)s"
        case .token(let error): return error.description
        case .transport(let error): return "Defender API unreachable: \(error)"
        case .malformedResponse(let detail): return "malformed response from the Defender API: \(detail)"
        case .cancelled(let detail): return "Defender API call cancelled \(detail)"
        }
    }
}
