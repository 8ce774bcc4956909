import DefenderAPI
import Synchronization

/// The HTTP clients of the HTTP sinks: one for each CA file and proxy, shared by every sink
/// that uses them (each client keeps a connection pool per host, so sinks sending to one
/// receiver share its connections), and shut down when the last of its sinks is.
final class SinkHTTPClients: Sendable {
    static let shared = SinkHTTPClients()

    private struct Entry {
        var caFile: String?
        var proxy: ProxySettings
        var client: DefenderHTTPClient
        var users: Int
    }

    private let entries = Mutex<[Entry]>([])

    /// The client for `caFile` and `proxy`, made on first use; each call is matched by one
    /// ``release(_:)``. Fails when the CA file cannot be read.
    func acquire(caFile: String?, proxy: ProxySettings) throws -> DefenderHTTPClient {
        try entries.withLock { entries in
            if let index = entries.firstIndex(where: { $0.caFile == caFile && $0.proxy == proxy }) {
                entries[index].users += 1
                return entries[index].client
            }
            var settings = DefenderHTTPClient.Settings(caFile: caFile, proxy: proxy)
            // A receiver's answer is a status, an error page or a bulk's items: never the 128
            // MiB a page of alerts may take.
            settings.maximumBodySize = HTTPSink.maximumAnswerSize
            let client = try DefenderHTTPClient(settings: settings)
            entries.append(Entry(caFile: caFile, proxy: proxy, client: client, users: 1))
            return client
        }
    }

    /// One sink no longer uses `client`: shut down once none does.
    func release(_ client: DefenderHTTPClient) async {
        let unused = entries.withLock { entries -> Bool in
            guard let index = entries.firstIndex(where: { $0.client === client }) else { return false }
            entries[index].users -= 1
            guard entries[index].users == 0 else { return false }
            entries.remove(at: index)
            return true
        }
        if unused { await client.shutdown() }
    }

    /// How many clients are open (tests).
    var count: Int { entries.withLock { $0.count } }
}
