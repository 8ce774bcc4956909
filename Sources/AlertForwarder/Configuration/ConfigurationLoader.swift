import DefenderAPI
import Foundation
import Logging
import OrderedJSON
import Systemd
import TOMLKit
import Timekeeping

/// Reads, parses and validates `defender-alertd.toml`.
///
/// Parsing is TOMLKit's; this type checks what the daemon needs: required keys, types,
/// ranges, enumerations, durations, unique names, references between tables, unknown keys,
/// file permissions and secrets. It reports every problem of a file at once, each as
/// `PATH:LINE: key: problem`.
public struct ConfigurationLoader: Sendable {
    /// The default configuration file.
    public static let defaultPath = "/etc/defender-alertd/defender-alertd.toml"

    /// Environment used for `$STATE_DIRECTORY` and `$CREDENTIALS_DIRECTORY`.
    public var environment: [String: String]
    /// The user the daemon runs as (for secret file ownership).
    public var effectiveUserID: uid_t
    /// Outside the service (`login` run by an administrator), the token key's systemd
    /// credential does not exist: it is then left out (the token is stored unsealed, and the
    /// daemon seals it at its first renewal) instead of being an error.
    public var tokenKeyOptionalOutsideService = false

    /// Creates a loader for this process.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment, effectiveUserID: uid_t = geteuid()) {
        self.environment = environment
        self.effectiveUserID = effectiveUserID
    }

    /// Loads and validates the file at `path`.
    public func load(path: String) throws(ConfigurationErrors) -> Configuration {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let reason = errno == ENOENT ? "configuration file not found" : String(cString: strerror(errno))
            throw ConfigurationErrors([ConfigurationError(path: path, message: reason)])
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw ConfigurationErrors([ConfigurationError(path: path, message: "not a regular file")])
        }
        guard info.st_mode & 0o022 == 0 else {
            throw ConfigurationErrors([
                ConfigurationError(
                    path: path,
                    message:
                        "configuration file is writable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); anyone who can edit it can redirect alerts and credentials; fix: chmod go-w \(path)"
                )
            ])
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationErrors([ConfigurationError(path: path, message: "cannot read the file: permission denied")])
        }
        guard let source = String(data: data, encoding: .utf8) else {
            throw ConfigurationErrors([ConfigurationError(path: path, message: "the file is not UTF-8 text")])
        }
        return try parse(source, path: path)
    }

    /// Parses and validates configuration text; `path` names it in messages and anchors
    /// relative paths.
    public func parse(_ source: String, path: String) throws(ConfigurationErrors) -> Configuration {
        if let problem = TOMLPrecheck.problem(in: source) {
            throw ConfigurationErrors([ConfigurationError(path: path, line: problem.line, message: "TOML syntax error: \(problem.message)")])
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: source)
        } catch let error as TOMLParseError {
            throw ConfigurationErrors([
                ConfigurationError(
                    path: path, line: error.source.begin.line, message: "TOML syntax error: \(error.description)"
                )
            ])
        } catch {
            throw ConfigurationErrors([ConfigurationError(path: path, message: "TOML syntax error: \(error)")])
        }
        // TOMLKit 0.6 never frees a parsed document (its tables have no deinit): emptied here,
        // once read, or every load and reload would keep about 2 KB a tenant for good. Nothing
        // read from it refers to it.
        defer { root.clear() }

        let report = ValidationReport(path: path, locator: TOMLKeyLocator(source: source))
        let baseDirectory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let validator = Validator(
            report: report, baseDirectory: baseDirectory, environment: environment,
            secrets: SecretFileReader(effectiveUserID: effectiveUserID), tokenKeyOptionalOutsideService: tokenKeyOptionalOutsideService
        )
        let configuration = validator.validate(root, path: path)
        guard report.errors.isEmpty, let configuration else {
            throw ConfigurationErrors(report.errors.sorted { ($0.line ?? 0) < ($1.line ?? 0) })
        }
        return configuration
    }
}

/// The checks themselves, one method per table.
private struct Validator {
    let report: ValidationReport
    let baseDirectory: String
    let environment: [String: String]
    let secrets: SecretFileReader
    let tokenKeyOptionalOutsideService: Bool

    private static let namePattern = "letters, digits, - and _ (at most 64)"

    func validate(_ root: TOMLTable, path: String) -> Configuration? {
        let top = TableReader(root, location: "", displayName: "", report: report)
        let service = serviceSettings(table(named: "service", top: top))
        let sinkTables = arrayOfTables(named: "sink", top: top)
        let sinks = sinkTables.enumerated().map { sink($1, index: $0) }
        let sinkNames = Set(sinks.compactMap { $0?.name })
        let tenantTables = arrayOfTables(named: "tenant", top: top)
        let tenants = tenantTables.enumerated().map { tenant($1, index: $0, sinkNames: sinkNames) }
        top.rejectUnknownKeys()

        if root["tenant"] == nil { top.fail(named: nil, "no [[tenant]] is configured; add at least one") }
        if root["sink"] == nil { top.fail(named: nil, "no [[sink]] is configured; add at least one") }
        rejectDuplicates(tenantTables.map { $0["name"]?.string }, tables: "tenant")
        rejectDuplicates(sinkTables.map { $0["name"]?.string }, tables: "sink")
        if let service { rejectDestructivePaths(sinks, stateDirectory: service.stateDirectory, configuration: path) }
        // In a group a signed-in user's refresh token is kept in the shared database, sealed
        // only: every member needs the token key.
        if let service, service.stateDatabase != nil, service.tokenKey == nil, !service.tokenKeyOutsideService {
            for (index, tenant) in tenants.enumerated() {
                guard let tenant, case .signedInUser = tenant.credential else { continue }
                TableReader(tenantTables[index], location: "tenant[\(index)]", displayName: "tenant", report: report)
                    .fail(
                        ConfigurationKey.Tenant.auth,
                        "auth = \"delegated\" in a group on state_database needs token_key_credential (or token_key_file): the signed-in user's refresh token is kept in PostgreSQL sealed with it, never in plain text, and every member reads it"
                    )
            }
        }

        guard report.errors.isEmpty, let service else { return nil }
        return Configuration(path: path, service: service, tenants: tenants.compactMap { $0 }, sinks: sinks.compactMap { $0 })
    }

    // MARK: Tables

    private func table(named name: String, top: TableReader) -> TOMLTable? {
        guard let value = top.table(named: name) else { return nil }
        guard let table = value.table else {
            top.fail(named: name, "must be a table: write [\(name)]")
            return nil
        }
        return table
    }

    private func arrayOfTables(named name: String, top: TableReader) -> [TOMLTable] {
        guard let value = top.table(named: name) else { return [] }
        let tables = value.array?.compactMap(\.table) ?? []
        guard let array = value.array, tables.count == array.count else {
            top.fail(named: name, "must be an array of tables: write [[\(name)]] for each \(name)")
            return []
        }
        return tables
    }

    private func serviceSettings(_ table: TOMLTable?) -> ServiceSettings? {
        typealias Keys = ConfigurationKey.Service
        let reader = TableReader(table ?? TOMLTable(), location: "service", displayName: "service", report: report)
        let defaultStateDirectory =
            environment["STATE_DIRECTORY"].flatMap { $0.split(separator: ":").first.map(String.init) }
            ?? resolve("state")
        let stateDirectory = reader.string(Keys.stateDirectory).map(resolve) ?? defaultStateDirectory
        let pollInterval = reader.duration(Keys.pollInterval)
        let logLevel: Logger.Level? = reader.choice(Keys.logLevel)
        let logFormat: LogFormat? = reader.choice(Keys.logFormat)
        let maxOutbox = reader.integer(Keys.maxOutbox)
        let pollTimeout = reader.duration(Keys.pollTimeout)
        let caFile = reader.string(Keys.caFile).map(resolve)
        if let caFile, let problem = DefenderHTTPClient.checkCAFile(caFile) { reader.fail(Keys.caFile, problem) }
        let proxyURL = reader.string(Keys.proxyURL)
        let proxy = proxyURL.flatMap(ProxySettings.parse)
        if let proxyURL {
            if proxy == nil {
                reader.fail(
                    Keys.proxyURL,
                    "\"\(SecretRedaction.redact(proxyURL))\" is not a proxy URL such as http://proxy.example:3128 or http://user@proxy.example:3128 (port 1...65535)"
                )
            } else if proxy?.password != nil {
                reader.fail(
                    Keys.proxyURL,
                    "\"\(SecretRedaction.redact(proxyURL))\" holds a password, which would sit in plain text in the configuration: write http://user@host:port and put the password in proxy_password_file (mode 0600) or proxy_password_credential"
                )
            }
        }
        let proxyPassword = optionalSecret(file: Keys.proxyPasswordFile, credential: Keys.proxyPasswordCredential, reader: reader)
        if proxyPassword != nil, proxy?.username == nil {
            reader.fail(
                reader.has(Keys.proxyPasswordFile) ? Keys.proxyPasswordFile : Keys.proxyPasswordCredential,
                "a proxy password needs a proxy_url with the user name (http://user@proxy.example:3128)")
        }
        let outsideService =
            tokenKeyOptionalOutsideService && (environment["CREDENTIALS_DIRECTORY"] ?? "").isEmpty && reader.has(Keys.tokenKeyCredential)
        if outsideService { _ = reader.string(Keys.tokenKeyCredential) }
        let tokenKey = outsideService ? nil : optionalSecret(file: Keys.tokenKeyFile, credential: Keys.tokenKeyCredential, reader: reader)
        let metricsText = reader.string(Keys.metricsListen)
        let metricsListen = metricsText.flatMap(ListenAddress.init(parsing:))
        if let metricsText, metricsListen == nil {
            reader.fail(
                Keys.metricsListen,
                "\"\(metricsText)\" is not a listen address: write an IP address and port (127.0.0.1:9464, [::1]:9464, localhost:9464) or unix:/absolute/path"
            )
        }
        let unhealthyAfter = reader.duration(Keys.unhealthyAfter)
        let stateDatabase = stateDatabase(reader, caFile: caFile)
        let memberName = reader.string(Keys.memberName).flatMap { validName($0, key: Keys.memberName, reader: reader) }
        if memberName != nil, stateDatabase == nil, !reader.has(Keys.stateDatabase) {
            reader.fail(Keys.memberName, "is set, but state_database is not: a name in a group needs the group's database")
        }
        reader.rejectUnknownKeys()
        guard let pollInterval, let logLevel, let logFormat, let maxOutbox, let pollTimeout, let unhealthyAfter else { return nil }
        return ServiceSettings(
            stateDirectory: stateDirectory, pollInterval: pollInterval, logLevel: logLevel, logFormat: logFormat, maxOutbox: maxOutbox,
            pollTimeout: pollTimeout, caFile: caFile, proxyURL: proxyURL, proxyPassword: proxyPassword,
            tokenKey: tokenKey, tokenKeyOutsideService: outsideService, metricsListen: metricsListen,
            unhealthyAfter: unhealthyAfter, stateDatabase: stateDatabase, memberName: memberName)
    }

    /// `state_database` and the keys that go with it; nil when absent (or wrong: reported).
    private func stateDatabase(_ reader: TableReader, caFile: String?) -> StateDatabaseSettings? {
        typealias Keys = ConfigurationKey.Service
        let ownCAFile = reader.string(Keys.stateDatabaseCAFile).map(resolve)
        if let ownCAFile, let problem = DefenderHTTPClient.checkCAFile(ownCAFile) { reader.fail(Keys.stateDatabaseCAFile, problem) }
        let password = optionalSecret(file: Keys.stateDatabasePasswordFile, credential: Keys.stateDatabasePasswordCredential, reader: reader)
        let leaseTTL = reader.duration(Keys.leaseTTL)
        guard let text = reader.string(Keys.stateDatabase) else {
            for key in [Keys.stateDatabaseCAFile, Keys.stateDatabasePasswordFile, Keys.stateDatabasePasswordCredential] where reader.has(key) {
                reader.fail(key, "is set, but state_database is not: the state is in state_directory")
            }
            return nil
        }
        switch StateDatabaseSettings.parse(text) {
        case .failure(let error):
            reader.fail(Keys.stateDatabase, error.message)
            return nil
        case .success(let parts):
            guard let leaseTTL else { return nil }
            let loopback = Loopback.isLoopback(host: parts.host)
            let tls = parts.tls ?? (loopback ? .disable : .verifyFull)
            return StateDatabaseSettings(
                host: parts.host, port: parts.port, user: parts.user, database: parts.database, tls: tls,
                caFile: ownCAFile ?? caFile, password: password, leaseTTL: leaseTTL)
        }
    }

    /// A tenant's settings against what its API allows: call limits, page size, and the keys
    /// only the other API has.
    private func check(
        _ api: AlertsAPI, perMinute: Int?, perHour: Int?, pageSize: Int?, serviceSources: [String]?, records: [RecordKind]?,
        reader: TableReader
    ) {
        typealias Keys = ConfigurationKey.Tenant
        let (mostPerMinute, mostPerHour) = api.callLimits
        if let perMinute, perMinute > mostPerMinute {
            reader.fail(Keys.rateLimitPerMinute, "\(perMinute) is more than the \(api.rawValue) API allows an app a minute (\(mostPerMinute))")
        }
        if let perHour, perHour > mostPerHour {
            reader.fail(Keys.rateLimitPerHour, "\(perHour) is more than the \(api.rawValue) API allows an app an hour (\(mostPerHour))")
        }
        if let pageSize, pageSize > api.maximumPageSize {
            reader.fail(Keys.pageSize, "\(pageSize) is more than the \(api.rawValue) API returns in a page (\(api.maximumPageSize))")
        }
        if api == .graph, reader.has(Keys.expandEvidence) {
            reader.fail(
                Keys.expandEvidence, "Microsoft Graph always sends the alerts' evidence; expand_evidence is for api = \"mde\" (remove it)")
        }
        if api == .mde, serviceSources != nil {
            reader.fail(Keys.serviceSource, "the MDE API has Endpoint alerts only; service_source is for api = \"graph\"")
        }
        if api == .mde, records?.contains(.incident) == true {
            reader.fail(
                Keys.records,
                "the MDE API has no incidents: Defender's incidents are read from Microsoft Graph security/incidents, with api = \"graph\" and the application permission SecurityIncident.Read.All on Microsoft Graph (beside SecurityAlert.Read.All for the alerts)"
            )
        }
    }

    /// A sweep's window reaches past what polls re-read (`overlap`) and not past the dedup keys.
    private func checkReconciliation(every: Duration?, window: Duration?, overlap: Duration?, reader: TableReader) {
        typealias Keys = ConfigurationKey.Tenant
        if let every, let window, let overlap, every > .zero, window > .zero, window <= overlap {
            reader.fail(
                Keys.reconcileWindow,
                "\(ConfigDuration.format(window)) is not longer than overlap (\(ConfigDuration.format(overlap))): a sweep reads what the polls no longer re-read, older than overlap; make it longer, or \"0\" to turn sweeps off"
            )
        } else if let window, window >= StateStore.dedupRetention {
            reader.fail(
                Keys.reconcileWindow,
                "\(ConfigDuration.format(window)) reaches back beyond the \(StateStore.dedupRetention.components.seconds / 86400) days dedup keys are kept: a sweep would deliver alerts again"
            )
        }
    }

    /// Every sink a tenant names is defined.
    private func checkSinks(_ sinks: [String]?, among sinkNames: Set<String>, reader: TableReader) {
        for sink in sinks ?? [] where !sinkNames.contains(sink) {
            let defined = sinkNames.isEmpty ? "no valid sink is defined" : "defined: " + sinkNames.sorted().joined(separator: ", ")
            reader.fail(ConfigurationKey.Tenant.sinks, "no [[sink]] is named \"\(sink)\"; \(defined)")
        }
    }

    private func tenant(_ table: TOMLTable, index: Int, sinkNames: Set<String>) -> TenantConfiguration? {
        typealias Keys = ConfigurationKey.Tenant
        let reader = TableReader(table, location: "tenant[\(index)]", displayName: "tenant", report: report)
        let name = reader.string(Keys.name).flatMap { validName($0, key: Keys.name, reader: reader) }
        let tenantID = reader.string(Keys.tenantID).flatMap { validTenantID($0, reader: reader) }
        let clientID = reader.string(Keys.clientID).flatMap { validGUID($0, key: Keys.clientID, reader: reader) }
        let delegated = reader.choice(Keys.auth) == "delegated"
        let credential = delegated ? signedInUser(reader) : credential(reader)
        let api: AlertsAPI? = reader.choice(Keys.api)
        let cloud: Cloud? = reader.choice(Keys.cloud)
        let region: Region? = reader.choice(Keys.region)
        if region != nil, let cloud, cloud != .commercial {
            reader.fail(Keys.region, "regional hosts exist only in the commercial cloud, not in \(cloud.rawValue)")
        } else if region != nil, api == .graph {
            reader.fail(Keys.region, "regional hosts are the MDE API's; Microsoft Graph has one host per cloud (remove region)")
        }
        let apiURL = reader.string(Keys.apiURL).flatMap { validURL($0, key: Keys.apiURL, reader: reader) }
        let loginURL = reader.string(Keys.loginURL).flatMap { validURL($0, key: Keys.loginURL, reader: reader) }
        let tokenVersion: TokenEndpointVersion? = reader.choice(Keys.tokenVersion)
        let algorithm: CertificateCredential.Algorithm? = reader.choice(Keys.certificateAlgorithm)
        // The API's own limits and words (MDE's while `api` itself is invalid).
        let vocabulary = api ?? .mde
        let perMinute = reader.has(Keys.rateLimitPerMinute) ? reader.integer(Keys.rateLimitPerMinute) : vocabulary.callLimits.perMinute
        let perHour = reader.has(Keys.rateLimitPerHour) ? reader.integer(Keys.rateLimitPerHour) : vocabulary.callLimits.perHour
        let lookback = reader.duration(Keys.lookback)
        let overlap = reader.duration(Keys.overlap)
        let pageSize = reader.integer(Keys.pageSize)
        let expandEvidence = reader.bool(Keys.expandEvidence)
        let forward: ForwardMode? = reader.choice(Keys.forward)
        // A value in the other API's words is named as such.
        let other: AlertsAPI = vocabulary == .graph ? .mde : .graph
        func note(_ values: KeyPath<AlertsAPI, [String]>, _ what: String) -> (String) -> String? {
            { text in
                other[keyPath: values].contains(text)
                    ? "\"\(text)\" is \(other == .mde ? "an MDE" : "a Graph") \(what); with api = \"\(vocabulary.rawValue)\" the API spells it differently"
                    : nil
            }
        }
        let severities = reader.stringList(Keys.severity, from: vocabulary.severities, note: note(\.severities, "severity"))
        let statuses = reader.stringList(Keys.status, from: vocabulary.statuses, note: note(\.statuses, "status"))
        let serviceSources = reader.stringList(Keys.serviceSource)
        let records = reader.stringList(Keys.records).map { $0.compactMap { name in RecordKind.allCases.first { $0.plural == name } } }
        if let api {
            check(api, perMinute: perMinute, perHour: perHour, pageSize: pageSize, serviceSources: serviceSources, records: records, reader: reader)
        }
        let reconcileEvery = reader.duration(Keys.reconcileEvery)
        let reconcileWindow = reader.duration(Keys.reconcileWindow)
        checkReconciliation(every: reconcileEvery, window: reconcileWindow, overlap: overlap, reader: reader)
        let sinks = reader.stringList(Keys.sinks)
        checkSinks(sinks, among: sinkNames, reader: reader)
        reader.rejectUnknownKeys(hints: [
            "client_secret":
                "inline secrets are not allowed; put the secret in a file readable only by the daemon (client_secret_file) or in a systemd credential (client_secret_credential)",
            "private_key": "inline keys are not allowed; use private_key_file or private_key_credential",
        ])
        guard let name, let tenantID, let clientID, let credential, let api, let cloud, let lookback, let overlap,
            let pageSize, let expandEvidence, let forward, let tokenVersion, let algorithm, let perMinute, let perHour,
            let reconcileEvery, let reconcileWindow
        else { return nil }
        if case .certificate(_, let pem, let key, _) = credential {
            do {
                _ = try CertificateCredential(certificatePEM: pem, privateKeyPEM: key, algorithm: algorithm)
            } catch {
                reader.fail(Keys.certificateFile, error.description)
                return nil
            }
        }
        return TenantConfiguration(
            name: name, tenantID: tenantID, clientID: clientID, credential: credential, api: api, cloud: cloud,
            region: region, apiURL: apiURL, loginURL: loginURL, tokenVersion: tokenVersion, certificateAlgorithm: algorithm,
            rateLimitPerMinute: perMinute, rateLimitPerHour: perHour, lookback: lookback, overlap: overlap,
            pageSize: pageSize, expandEvidence: expandEvidence, forward: forward,
            severities: severities, statuses: statuses, serviceSources: serviceSources, records: records ?? [.alert], sinkNames: sinks,
            reconcileEvery: reconcileEvery, reconcileWindow: reconcileWindow
        )
    }

    /// `auth = "delegated"`: the token comes from a person's sign-in, so the app proves nothing
    /// itself; the sign-in is v2 only.
    private func signedInUser(_ reader: TableReader) -> TenantCredential? {
        typealias Keys = ConfigurationKey.Tenant
        var valid = true
        for key in [
            Keys.clientSecretFile, Keys.clientSecretCredential, Keys.certificateFile, Keys.privateKeyFile, Keys.privateKeyCredential,
            Keys.certificateAlgorithm,
        ] where reader.has(key) {
            _ = reader.string(key)  // read, so that it is not also reported as unknown
            reader.fail(
                key,
                "with auth = \"delegated\" the token comes from a person's sign-in (defender-alertd login); the app is a public client with no secret or certificate: remove \(key.name)"
            )
            valid = false
        }
        if reader.has(Keys.tokenVersion), reader.string(Keys.tokenVersion)?.lowercased() == "v1" {
            reader.fail(Keys.tokenVersion, "the sign-in of auth = \"delegated\" (device code flow) exists on the v2 endpoint only")
            valid = false
        }
        return valid ? .signedInUser : nil
    }

    private func credential(_ reader: TableReader) -> TenantCredential? {
        typealias Keys = ConfigurationKey.Tenant
        let sources = [Keys.clientSecretFile, Keys.clientSecretCredential, Keys.certificateFile].filter(reader.has).map(\.name)
        let secretFile = reader.string(Keys.clientSecretFile)
        let secretCredential = reader.string(Keys.clientSecretCredential)
        let certificateFile = reader.string(Keys.certificateFile)
        let keyFile = reader.string(Keys.privateKeyFile)
        let keyCredential = reader.string(Keys.privateKeyCredential)

        guard sources.count == 1 else {
            reader.fail(
                nil,
                sources.isEmpty
                    ? "no credential: set exactly one of client_secret_file, client_secret_credential or certificate_file (with private_key_file or private_key_credential)"
                    : "several credentials (\(sources.joined(separator: ", "))): set exactly one")
            return nil
        }
        if certificateFile == nil, reader.has(Keys.privateKeyFile) || reader.has(Keys.privateKeyCredential) {
            reader.fail(
                reader.has(Keys.privateKeyFile) ? Keys.privateKeyFile : Keys.privateKeyCredential,
                "a private key is only used with certificate_file")
            return nil
        }
        if certificateFile == nil {
            guard
                case .given(let location, let key) = secretSource(
                    file: secretFile, Keys.clientSecretFile, credential: secretCredential,
                    Keys.clientSecretCredential, reader: reader)
            else { return nil }
            return readSecret(location, key: key, reader: reader).map { .clientSecret($0, from: location) }
        }
        guard let certificateFile else { return nil }
        let certificatePath = resolve(certificateFile)
        let certificatePEM = readCertificate(certificatePath, reader: reader)
        let keyLocation: SecretLocation
        let keySetting: ConfigurationKey
        switch secretSource(file: keyFile, Keys.privateKeyFile, credential: keyCredential, Keys.privateKeyCredential, reader: reader) {
        case .given(let location, let key):
            (keyLocation, keySetting) = (location, key)
        case .absent:
            if !reader.has(Keys.privateKeyFile), !reader.has(Keys.privateKeyCredential) {
                reader.fail(Keys.certificateFile, "needs private_key_file or private_key_credential")
            }
            return nil
        case .refused:
            return nil
        }
        guard let key = readSecret(keyLocation, key: keySetting, reader: reader), let certificatePEM else { return nil }
        guard key.withValue({ $0.contains("PRIVATE KEY-----") }) else {
            reader.fail(keySetting, "\(keyLocation.path) holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
            return nil
        }
        return .certificate(certificateFile: certificatePath, certificatePEM: certificatePEM, privateKey: key, from: keyLocation)
    }

    /// Where a secret given by one of two keys is: a file, or a systemd credential.
    private enum SecretSource {
        /// Neither key is set.
        case absent
        /// One is: the place, and the key that named it (for messages).
        case given(SecretLocation, key: ConfigurationKey)
        /// Both are, or the credential name cannot be one: already reported.
        case refused
    }

    /// The one reader of every "a file or a systemd credential" pair (the client secret, the
    /// private key, a sink's token or client key, a password): given the keys' values as read.
    private func secretSource(
        file: String?, _ fileKey: ConfigurationKey, credential: String?, _ credentialKey: ConfigurationKey,
        reader: TableReader
    ) -> SecretSource {
        switch (file, credential) {
        case (nil, nil):
            return .absent
        case (_?, _?):
            reader.fail(credentialKey, "set only one of \(fileKey.name) and \(credentialKey.name)")
            return .refused
        case (let file?, nil):
            return .given(.file(resolve(file)), key: fileKey)
        case (nil, let name?):
            return credentialLocation(name, key: credentialKey, reader: reader).map { .given($0, key: credentialKey) } ?? .refused
        }
    }

    /// An optional secret given by one of two keys: a file, or a systemd credential.
    private func optionalSecret(file fileKey: ConfigurationKey, credential credentialKey: ConfigurationKey, reader: TableReader) -> Secret? {
        let source = secretSource(file: reader.string(fileKey), fileKey, credential: reader.string(credentialKey), credentialKey, reader: reader)
        guard case .given(let location, let key) = source else { return nil }
        return readSecret(location, key: key, reader: reader)
    }

    private func readSecret(_ location: SecretLocation, key: ConfigurationKey, reader: TableReader) -> Secret? {
        report.secretFiles.append(location.path)
        do {
            return try secrets.read(location.path)
        } catch {
            reader.fail(key, error.message)
            return nil
        }
    }

    private func credentialLocation(_ name: String, key: ConfigurationKey, reader: TableReader) -> SecretLocation? {
        guard name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.@".contains($0) }), !name.hasPrefix(".") else {
            reader.fail(key, "\"\(name)\" is not a credential name (letters, digits, -, _, ., @)")
            return nil
        }
        guard let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
            reader.fail(
                key,
                "CREDENTIALS_DIRECTORY is not set: systemd credentials exist only under a unit with LoadCredential=\(name):/path/to/file (or SetCredentialEncrypted=); use client_secret_file outside systemd"
            )
            return nil
        }
        return .credential(name: name, path: directory + "/" + name)
    }

    private func readCertificate(_ path: String, reader: TableReader) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else {
            reader.fail(
                ConfigurationKey.Tenant.certificateFile,
                FileManager.default.fileExists(atPath: path)
                    ? "\(path) cannot be read" : "\(path) does not exist")
            return nil
        }
        let text = String(decoding: data, as: UTF8.self)
        guard text.contains("-----BEGIN CERTIFICATE-----") else {
            reader.fail(ConfigurationKey.Tenant.certificateFile, "\(path) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
            return nil
        }
        return text
    }

    private func sink(_ table: TOMLTable, index: Int) -> SinkConfiguration? {
        typealias Keys = ConfigurationKey.Sink
        let reader = TableReader(table, location: "sink[\(index)]", displayName: "sink", report: report)
        let name = reader.string(Keys.name).flatMap { validName($0, key: Keys.name, reader: reader) }
        guard let type = reader.choice(Keys.type) else { return nil }
        // Only the keys that apply to this type are read; any other is reported as unknown.
        let kind: SinkConfiguration.Kind?
        let shape = type == "journal" ? .native : recordShape(reader)
        switch type {
        case "journal":
            kind = .journal
        case "stdout":
            let format: RecordFormat? = reader.choice(Keys.format)
            if let format, format != .alert { requireNative(shape, reader, for: "format = \"\(format.rawValue)\"; use format = \"alert\"") }
            kind = format.map { .stdout(format: $0) }
        case "syslog":
            kind = syslogSettings(reader, shape: shape).map { .syslog($0) }
        case "http":
            kind = httpSettings(reader, shape: shape).map { .http($0) }
        default:
            let path = reader.string(Keys.path).map(resolve)
            let format: RecordFormat? = reader.choice(Keys.format)
            if let format, format != .alert { requireNative(shape, reader, for: "format = \"\(format.rawValue)\"; use format = \"alert\"") }
            let maxSize = reader.byteSize(Keys.maxSize)
            let maxFiles = reader.integer(Keys.maxFiles)
            if let path, let format, let maxSize, let maxFiles {
                kind = .file(path: path, format: format, maxSize: maxSize, maxFiles: maxFiles)
            } else {
                kind = nil
            }
        }
        reader.rejectUnknownKeys()
        guard let name, let kind, let shape else { return nil }
        return SinkConfiguration(name: name, kind: kind, shape: shape)
    }

    /// `schema`, `evidence` and `include_original`.
    private func recordShape(_ reader: TableReader) -> RecordShape? {
        typealias Keys = ConfigurationKey.Sink
        let schema: RecordShape.Schema? = reader.choice(Keys.schema)
        let evidence: RecordShape.Evidence? = reader.choice(Keys.evidence)
        let includeOriginal = reader.bool(Keys.includeOriginal)
        if includeOriginal == true, schema == .native {
            reader.fail(Keys.includeOriginal, "applies to schema = \"ecs\" or \"ocsf\" only (a native record is Defender's JSON already)")
        }
        guard let schema, let evidence, let includeOriginal else { return nil }
        return RecordShape(schema: schema, evidence: evidence, includeOriginal: includeOriginal)
    }

    /// Refuses a schema or a split evidence that the sink's other settings (`setting`) cannot carry.
    private func requireNative(_ shape: RecordShape?, _ reader: TableReader, for setting: String) {
        typealias Keys = ConfigurationKey.Sink
        guard let shape else { return }
        if shape.schema != .native { reader.fail(Keys.schema, "\"\(shape.schema.rawValue)\" cannot be written with \(setting)") }
        if shape.evidence == .split { reader.fail(Keys.evidence, "\"split\" cannot be written with \(setting)") }
    }

    private func syslogSettings(_ reader: TableReader, shape: RecordShape?) -> SyslogSettings? {
        typealias Keys = ConfigurationKey.Sink
        var address: SyslogAddress?
        if let text = reader.string(Keys.address) {
            switch SyslogAddress.parse(text) {
            case .success(let parsed): address = parsed
            case .failure(let error): reader.fail(Keys.address, error.description)
            }
        }
        let syslogProtocol: SyslogProtocol? = reader.choice(Keys.syslogProtocol)
        let format: SyslogBodyFormat? = reader.choice(Keys.syslogFormat)
        if format == .cef { requireNative(shape, reader, for: "format = \"cef\" (a CEF line is a schema of its own); use format = \"json\"") }
        let cefAlertJSON = reader.bool(Keys.cefAlertJSON)
        if cefAlertJSON == true, format == .json {
            reader.fail(Keys.cefAlertJSON, "applies to format = \"cef\" only (with json the message is the alert JSON already)")
        }
        let framing: SyslogFraming? = reader.choice(Keys.framing)
        let facility: SyslogFacility? = reader.choice(Keys.facility)
        let appName = reader.string(Keys.appName)
        let hostname = reader.string(Keys.hostname) ?? ProcessInfo.processInfo.hostName
        for (key, value) in [(Keys.appName, appName), (Keys.hostname, hostname)] {
            if let value, value.isEmpty || !value.unicodeScalars.allSatisfy({ $0.value > 32 && $0.value < 127 }) {
                reader.fail(key, "\"\(value)\" must be printable ASCII without spaces (RFC 5424 §6.2)")
            }
        }
        let enterpriseNumber = reader.integer(Keys.enterpriseNumber)
        let maxMessageSize = reader.byteSize(Keys.maxMessageSize)
        if let maxMessageSize, maxMessageSize < 480 { reader.fail(Keys.maxMessageSize, "must be at least 480 bytes (RFC 5424 §6.1)") }
        let timeout = reader.duration(Keys.timeout)
        let tlsKeys = [Keys.caFile, Keys.clientCertificateFile, Keys.clientKeyFile, Keys.clientKeyCredential, Keys.serverName]
        var tls: SyslogTLS?
        if address == nil {
            // Already reported; the TLS keys are not judged without knowing the transport.
            for key in tlsKeys { _ = reader.string(key) }
        }
        if let address {
            if address.transport != .tls {
                for key in tlsKeys where reader.has(key) {
                    reader.fail(key, "applies to tls:// addresses only; this sink sends to \(address.transport.rawValue)://")
                    _ = reader.string(key)
                }
            } else {
                tls = syslogTLS(reader)
            }
            if reader.has(Keys.framing), address.transport == .udp || address.transport == .relp {
                reader.fail(Keys.framing, "applies to tcp:// and tls:// only (\(address.transport.rawValue):// frames each message itself)")
            }
        }
        guard let address, let syslogProtocol, let format, let cefAlertJSON, let framing, let facility, let appName,
            let enterpriseNumber, let maxMessageSize, let timeout, address.transport != .tls || tls != nil
        else { return nil }
        let message = SyslogMessage(
            syslogProtocol: syslogProtocol, facility: facility, hostname: hostname, appName: appName,
            enterpriseNumber: enterpriseNumber)
        var settings = SyslogSettings(
            address: address, message: message, format: format, cefAlertJSON: cefAlertJSON, framing: framing,
            maxMessageSize: Int(maxMessageSize), timeout: timeout, tls: tls)
        settings.shape = shape ?? .native
        return settings
    }

    private func httpSettings(_ reader: TableReader, shape: RecordShape?) -> HTTPSinkSettings? {
        typealias Keys = ConfigurationKey.Sink
        let url = reader.string(Keys.url).flatMap { validURL($0, key: Keys.url, reader: reader, base: false) }
        let format: HTTPBodyFormat? = reader.choice(Keys.httpFormat)
        let authorization: HTTPAuthorization? = reader.has(Keys.auth) ? reader.choice(Keys.auth) : nil
        var token: Secret?
        switch secretSource(
            file: reader.string(Keys.tokenFile), Keys.tokenFile, credential: reader.string(Keys.tokenCredential), Keys.tokenCredential,
            reader: reader)
        {
        case .absent:
            if reader.has(Keys.auth) {
                reader.fail(Keys.auth, "needs token_file or token_credential")
            } else if format == .splunkHEC {
                reader.fail(Keys.tokenFile, "splunk-hec needs token_file or token_credential: HEC refuses every request without a token")
            }
        case .refused:
            break
        case .given(let location, let key):
            token = readSecret(location, key: key, reader: reader)
        }
        let headers = reader.stringTable(Keys.headers) ?? [:]
        let reserved = ["authorization", "content-type", "content-encoding", "host", "content-length", "transfer-encoding"]
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) {
            let shownName = PrintableText.shown(name, limit: 80)
            if reserved.contains(name.lowercased()) {
                reader.fail(
                    Keys.headers, "\"\(shownName)\" is set by the sink (a token goes in token_file or token_credential, never in the configuration)")
            } else if !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
                reader.fail(Keys.headers, "\"\(shownName)\" is not a header name (letters, digits, - and _)")
            } else if Self.isCredentialName(name) {
                reader.fail(
                    Keys.headers,
                    "\"\(shownName)\" carries a credential, which would sit in plain text in the configuration: put the token in token_file or token_credential (auth = \"bearer\", \"basic\", \"apikey\" or \"splunk\")"
                )
            } else if value.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7F || !$0.isASCII }) {
                // CR LF would end the header (and every request would fail, as if the receiver were down).
                reader.fail(
                    Keys.headers,
                    "the value of \"\(shownName)\" holds a line break, a control character or a character outside ASCII: \"\(PrintableText.shown(value, limit: 80))\""
                )
            }
        }
        let batchMaxAlerts = reader.integer(Keys.batchMaxAlerts)
        let batchMaxBytes = reader.byteSize(Keys.batchMaxBytes)
        if let batchMaxBytes, batchMaxBytes < 1024 { reader.fail(Keys.batchMaxBytes, "must be at least 1KB") }
        let flushInterval = reader.duration(Keys.flushInterval)
        let timeout = reader.duration(Keys.timeout)
        let gzip = reader.bool(Keys.gzip)
        let index = reader.string(Keys.index)
        let incidentIndex = reader.string(Keys.incidentIndex)
        let sourcetype = reader.string(Keys.sourcetype)
        let incidentSourcetype = reader.string(Keys.incidentSourcetype)
        let source = reader.string(Keys.source)
        let host = reader.string(Keys.host)
        let dataStream = reader.bool(Keys.dataStream)
        let pipeline = reader.string(Keys.pipeline)
        if let format, format != .splunkHEC {
            for key in [Keys.sourcetype, Keys.incidentSourcetype, Keys.source, Keys.host] where reader.has(key) {
                reader.fail(key, "applies to format = \"splunk-hec\" only")
            }
            if format != .elasticsearchBulk {
                for key in [Keys.index, Keys.incidentIndex] where reader.has(key) {
                    reader.fail(key, "applies to splunk-hec and elasticsearch-bulk only")
                }
            }
        }
        if let format, format != .elasticsearchBulk {
            if dataStream == true { reader.fail(Keys.dataStream, "applies to format = \"elasticsearch-bulk\" only") }
            if pipeline != nil { reader.fail(Keys.pipeline, "applies to format = \"elasticsearch-bulk\" only") }
        }
        if format == .json, shape?.evidence == .split {
            reader.fail(
                Keys.evidence,
                "\"split\" makes several documents of one alert, which format = \"json\" (one document per request) cannot carry; use json-array, ndjson, splunk-hec or elasticsearch-bulk"
            )
        }
        let caFile = reader.string(Keys.caFile).map(resolve)
        if let caFile, let problem = DefenderHTTPClient.checkCAFile(caFile) { reader.fail(Keys.caFile, problem) }
        // Every problem above is already in the report, which refuses the file: only the
        // values are needed here.
        guard let url, let format, let batchMaxAlerts, let batchMaxBytes, let flushInterval, let timeout, let gzip, let dataStream else { return nil }
        return HTTPSinkSettings(
            url: url, format: format, authorization: authorization, token: token, headers: headers,
            batchMaxAlerts: batchMaxAlerts, batchMaxBytes: Int(batchMaxBytes), flushInterval: flushInterval, timeout: timeout,
            gzip: gzip, index: index, incidentIndex: incidentIndex, sourcetype: sourcetype, incidentSourcetype: incidentSourcetype,
            source: source, host: host, caFile: caFile, shape: shape ?? .native, dataStream: dataStream, pipeline: pipeline)
    }

    /// The TLS keys of a `tls://` syslog sink, every file checked now: a CA bundle that holds
    /// certificates, a client certificate with exactly one source of its key, read under the
    /// secret rules.
    private func syslogTLS(_ reader: TableReader) -> SyslogTLS? {
        typealias Keys = ConfigurationKey.Sink
        var valid = true
        let caFile = reader.string(Keys.caFile).map(resolve)
        if let caFile, let problem = DefenderHTTPClient.checkCAFile(caFile) {
            reader.fail(Keys.caFile, problem)
            valid = false
        }
        let certificateFile = reader.string(Keys.clientCertificateFile).map(resolve)
        let keyFile = reader.string(Keys.clientKeyFile)
        let keyCredential = reader.string(Keys.clientKeyCredential)
        var key: Secret?
        switch (certificateFile, keyFile, keyCredential) {
        case (nil, nil, nil):
            break
        case (nil, _, _):
            reader.fail(keyFile != nil ? Keys.clientKeyFile : Keys.clientKeyCredential, "a client key needs client_certificate_file")
            valid = false
        case (_?, nil, nil):
            reader.fail(Keys.clientCertificateFile, "needs client_key_file or client_key_credential")
            valid = false
        case (_?, _?, _?):
            reader.fail(Keys.clientKeyCredential, "set only one of client_key_file and client_key_credential")
            valid = false
        case (let certificate?, let file, let credential):
            if let problem = DefenderHTTPClient.checkCAFile(certificate) {
                reader.fail(Keys.clientCertificateFile, problem)
                valid = false
            }
            if case .given(let location, let keySetting) = secretSource(
                file: file, Keys.clientKeyFile, credential: credential, Keys.clientKeyCredential,
                reader: reader)
            {
                key = readSecret(location, key: keySetting, reader: reader)
                if let secret = key, !secret.withValue({ $0.contains("PRIVATE KEY-----") }) {
                    reader.fail(keySetting, "\(location.path) holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)")
                    key = nil
                }
            }
            if key == nil { valid = false }
        }
        let serverName = reader.string(Keys.serverName)
        guard valid else { return nil }
        return SyslogTLS(caFile: caFile, clientCertificateFile: certificateFile, clientKey: key, serverName: serverName)
    }

    // MARK: Values

    private func validName(_ name: String, key: ConfigurationKey, reader: TableReader) -> String? {
        guard name.count <= 64, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            reader.fail(key, "\"\(name)\" is not a valid name: use \(Self.namePattern)")
            return nil
        }
        return name
    }

    private func validGUID(_ text: String, key: ConfigurationKey, reader: TableReader) -> String? {
        guard UUID(uuidString: text) != nil else {
            reader.fail(
                key,
                "\"\(text)\" is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx); copy the Application (client) ID from the app registration's overview page"
            )
            return nil
        }
        return text.lowercased()
    }

    private func validTenantID(_ text: String, reader: TableReader) -> String? {
        if UUID(uuidString: text) != nil { return text.lowercased() }
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        let isDomain =
            labels.count >= 2
            && labels.allSatisfy { label in
                !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                    && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
            }
        guard isDomain else {
            reader.fail(ConfigurationKey.Tenant.tenantID, "\"\(text)\" is neither a GUID nor a domain name such as contoso.onmicrosoft.com")
            return nil
        }
        return text.lowercased()
    }

    /// An http(s) URL; a base URL (`base`) has no query and loses a trailing `/`.
    private func validURL(_ text: String, key: ConfigurationKey, reader: TableReader, base: Bool = true) -> String? {
        // The URL is named in messages, `check-config` and logs: a password or a credential in
        // its query is never repeated, and is refused (it would sit in plain text here).
        let shown = Self.displayed(url: text)
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty, ["http", "https"].contains(scheme),
            !base || components.query == nil, components.fragment == nil
        else {
            reader.fail(key, "\"\(shown)\" is not an http(s) \(base ? "base URL" : "URL") such as https://host[:port]/path")
            return nil
        }
        if components.user != nil || components.password != nil {
            reader.fail(
                key,
                "\"\(shown)\" holds a user name or password: credentials never go in a URL in the configuration (for a sink: token_file or token_credential, with auth = \"basic\" for user:password)"
            )
            return nil
        }
        if let name = components.queryItems?.map(\.name).first(where: Self.isCredentialName) {
            reader.fail(
                key,
                "\"\(shown)\" carries a credential in its query (\(name)=): it would sit in plain text in the configuration and in every message naming the URL; put it in token_file or token_credential"
            )
            return nil
        }
        if case .invalid(let port) = URLAuthority.port(of: text) {
            reader.fail(key, "port \"\(port)\" in \"\(shown)\" is not a port; allowed: 1...65535")
            return nil
        }
        guard scheme == "https" || Loopback.isLoopback(host: host) else {
            reader.fail(key, "plain http is allowed only to loopback addresses; tokens and alerts must not cross a network unencrypted: use https://")
            return nil
        }
        return base && text.hasSuffix("/") ? String(text.dropLast()) : text
    }

    /// `url` as messages may show it: a password in its authority and the values of its query
    /// masked.
    static func displayed(url: String) -> String {
        let masked = SecretRedaction.redactURLPasswords(url)
        guard let question = masked.firstIndex(of: "?") else { return masked }
        let end = masked[question...].firstIndex(of: "#") ?? masked.endIndex
        let query = masked[masked.index(after: question)..<end].split(separator: "&", omittingEmptySubsequences: false).map { item in
            item.split(separator: "=", maxSplits: 1).count == 2 ? item.prefix { $0 != "=" } + "=" + SecretRedaction.mask : item
        }
        return masked[...question] + query.joined(separator: "&") + masked[end...]
    }

    /// Query parameter and header names that carry credentials (`?token=`, `X-Api-Key`, `Cookie`).
    static func isCredentialName(_ name: String) -> Bool {
        let lowered = name.lowercased().replacingOccurrences(of: "_", with: "-")
        let exact: Set<String> = ["cookie", "set-cookie", "proxy-authorization", "authorization", "code", "sig", "signature", "key", "auth"]
        return exact.contains(lowered)
            || ["token", "secret", "password", "passwd", "api-key", "apikey", "access-key", "session", "credential"].contains { lowered.contains($0) }
    }

    /// A file sink must not write where it destroys data or leaks it: inside the state
    /// directory (a sink at `state.sqlite` was overwritten by SQLite's checkpoint after its
    /// alerts were confirmed), onto the configuration or a secret file, or into the file of
    /// another sink. Paths are compared after resolving `..` and symbolic links.
    private func rejectDestructivePaths(_ sinks: [SinkConfiguration?], stateDirectory: String, configuration: String) {
        let state = Self.canonical(stateDirectory)
        let protected =
            [(Self.canonical(configuration), "the configuration file")]
            + report.secretFiles.map { (Self.canonical($0), "a secret file") }
        var seen: [String: String] = [:]
        for (index, sink) in sinks.enumerated() {
            guard let sink, case .file(let path, _, _, _) = sink.kind else { continue }
            let resolved = Self.canonical(path)
            let problem: String? =
                if resolved == state || resolved.hasPrefix(state + "/") {
                    "\(path) is inside the state directory \(stateDirectory); the daemon's own files there would be overwritten"
                } else if let (_, what) = protected.first(where: { $0.0 == resolved }) {
                    "\(path) is \(what); a sink must write to a file of its own"
                } else if let other = seen[resolved] {
                    "\(path) is also the file of sink \(other); each file sink needs its own file"
                } else {
                    nil
                }
            if let problem { report.add(problem, at: "sink[\(index)].path", key: "sink.path") }
            seen[resolved] = seen[resolved] ?? sink.name
        }
    }

    /// `path` with `.`, `..` and every symbolic link of its existing part resolved.
    static func canonical(_ path: String) -> String {
        var existing = (path as NSString).standardizingPath
        var rest: [String] = []
        while !existing.isEmpty, existing != "/", realpath(existing, nil) == nil {
            rest.insert((existing as NSString).lastPathComponent, at: 0)
            existing = (existing as NSString).deletingLastPathComponent
        }
        var base = existing
        if let resolved = realpath(existing.isEmpty ? "/" : existing, nil) {
            base = String(cString: resolved)
            free(resolved)
        }
        return rest.reduce(base) { ($0 as NSString).appendingPathComponent($1) }
    }

    private func rejectDuplicates(_ names: [String?], tables: String) {
        var seen: Set<String> = []
        for (index, name) in names.enumerated() {
            guard let name, !seen.insert(name).inserted else { continue }
            report.add("the name \"\(name)\" is used by more than one [[\(tables)]]", at: "\(tables)[\(index)].name", key: "\(tables).name")
        }
    }

    private func resolve(_ path: String) -> String {
        path.hasPrefix("/") ? path : URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: baseDirectory + "/")).standardizedFileURL.path
    }
}

extension Configuration {
    /// What loads but deserves a word to the operator (`check-config` prints each, the daemon
    /// logs each at start and reload): a syslog sink that sends in clear text to another host.
    public var warnings: [String] {
        [service.stateDatabase?.weakTLSWarning].compactMap { $0 }
            + sinks.compactMap { sink in
                guard case .syslog(let settings) = sink.kind, let warning = settings.plaintextWarning else { return nil }
                return "sink \(sink.name): \(warning)"
            }
    }
}
