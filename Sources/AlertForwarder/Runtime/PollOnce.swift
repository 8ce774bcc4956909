import DefenderAPI
import Foundation
import Logging
import OrderedJSON
import Timekeeping

/// `poll-once`: every tenant polled once (its alerts, and its incidents when it reads them),
/// then every sink drained once.
public enum PollOnce {
    /// Returns whether everything succeeded.
    public static func run(configuration: Configuration, store: StateStore, transport: any HTTPTransport, logger: Logger) async -> Bool {
        var succeeded = true
        for tenant in configuration.tenants {
            do {
                let clients = try makeClients(of: tenant, in: configuration, transport: transport, logger: logger)
                let sinks = configuration.sinks(for: tenant)
                for kind in tenant.records {
                    let poller = TenantPoller(
                        tenant: tenant, kind: kind, clients: clients, store: store, sinks: sinks.map(\.name),
                        storesHeadline: sinks.contains(where: \.showsHeadline), maxOutbox: configuration.service.maxOutbox,
                        logger: logger)
                    if case .completed = await poller.pollOnce() {} else { succeeded = false }
                }
            } catch {
                logger.error("tenant cannot be polled: \(error)", metadata: ["tenant": "\(tenant.name)"])
                succeeded = false
            }
        }
        for sink in configuration.sinks {
            let alertSink = Pipeline.makeSink(sink, in: configuration)
            let worker = SinkWorker(name: sink.name, sink: alertSink, store: store, batchSize: alertSink.batchSize, logger: logger)
            do {
                let delivered = try await worker.drain()
                logger.info("delivered", metadata: ["sink": "\(sink.name)", "alerts": "\(delivered)"])
            } catch {
                logger.error("delivery failed; the alerts stay queued", metadata: ["sink": "\(sink.name)", "error": "\(error)"])
                succeeded = false
            }
            await alertSink.shutdown()
        }
        return succeeded
    }
}

/// `poll-once --dry-run`: what the next poll would forward, printed as envelope JSON lines;
/// no state is changed (dedup keys are only read).
public enum DryRun {
    public static func run(configuration: Configuration, transport: any HTTPTransport, logger: Logger) async -> Bool {
        // Nothing is created: without a state database every alert would be new. A database
        // that exists but cannot be opened is an error, never quietly passed over.
        let directory = configuration.service.stateDirectory
        if configuration.service.stateDatabase != nil {
            logger.error("state_database: a dry run reads the state of a daemon alone; a group on PostgreSQL polls with its daemons")
            return false
        }
        var store: StateStore?
        if FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent("state.sqlite")) {
            do {
                store = try StateStore.embedded(directory: directory, access: .inspector)
            } catch {
                logger.error("\(error)")
                return false
            }
        }
        var succeeded = true
        for tenant in configuration.tenants {
            do {
                let clients = try makeClients(of: tenant, in: configuration, transport: transport, logger: logger)
                for stream in tenant.streams {
                    let kind = stream.kind
                    let start = tenant.pollStart(watermark: try await store?.admission.watermark(of: stream), now: Date())
                    try await clients.alerts.with(kind: kind).fetch(from: .inclusive(start)) { batch in
                        for alert in batch.alerts {
                            let known = try await store?.admission.isKnown(tenant: tenant.name, alert: alert, forward: tenant.forward) ?? false
                            let line =
                                "{\"tenant\":\(JSONValue.string(tenant.name).serialized),\"kind\":\"\(kind.rawValue)\",\"already_forwarded\":\(known),\"\(kind.rawValue)\":\(alert.json)}\n"
                            FileHandle.standardOutput.write(Data(line.utf8))
                        }
                    }
                }
            } catch {
                logger.error("\(error)", metadata: ["tenant": "\(tenant.name)"])
                succeeded = false
            }
        }
        return succeeded
    }
}

/// The tenant's clients for one run of one process (`poll-once`, `dry-run`), on a token cache and
/// rate budget of their own.
private func makeClients(
    of tenant: TenantConfiguration, in configuration: Configuration, transport: any HTTPTransport, logger: Logger
)
    throws(CredentialError) -> TenantClients
{
    try TenantClients(tenant: tenant, transport: transport, userTokens: configuration.service.userTokens(), logger: logger)
}
