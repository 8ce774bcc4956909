import DefenderAPI
import Foundation
import Logging
import TOMLKit

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
            throw ConfigurationErrors([ConfigurationError(
                path: path,
                message: "configuration file is writable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); anyone who can edit it can redirect alerts and credentials; fix: chmod go-w \(path)"
            )])
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
        let root: TOMLTable
        do {
            root = try TOMLTable(string: source)
        } catch let error as TOMLParseError {
            throw ConfigurationErrors([ConfigurationError(
                path: path, line: error.source.begin.line, message: "TOML syntax error: \(error.description)"
            )])
        } catch {
            throw ConfigurationErrors([ConfigurationError(path: path, message: "TOML syntax error: \(error)")])
        }

        let report = ValidationReport(path: path, locator: TOMLKeyLocator(source: source))
        let baseDirectory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let validator = Validator(
            report: report, baseDirectory: baseDirectory, environment: environment,
            secrets: SecretFileReader(effectiveUserID: effectiveUserID)
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

        if root["tenant"] == nil { top.fail(nil, "no [[tenant]] is configured; add at least one") }
        if root["sink"] == nil { top.fail(nil, "no [[sink]] is configured; add at least one") }
        rejectDuplicates(tenantTables.map { $0["name"]?.string }, tables: "tenant")
        rejectDuplicates(sinkTables.map { $0["name"]?.string }, tables: "sink")

        guard report.errors.isEmpty, let service else { return nil }
        return Configuration(path: path, service: service, tenants: tenants.compactMap { $0 }, sinks: sinks.compactMap { $0 })
    }

    // MARK: Tables

    private func table(named name: String, top: TableReader) -> TOMLTable? {
        guard let value = top.value(name) else { return nil }
        guard let table = value.table else {
            top.fail(name, "must be a table: write [\(name)]")
            return nil
        }
        return table
    }

    private func arrayOfTables(named name: String, top: TableReader) -> [TOMLTable] {
        guard let value = top.value(name) else { return [] }
        let tables = value.array?.compactMap(\.table) ?? []
        guard let array = value.array, tables.count == array.count else {
            top.fail(name, "must be an array of tables: write [[\(name)]] for each \(name)")
            return []
        }
        return tables
    }

    private func serviceSettings(_ table: TOMLTable?) -> ServiceSettings? {
        let reader = TableReader(table ?? TOMLTable(), location: "service", displayName: "service", report: report)
        let defaultStateDirectory = environment["STATE_DIRECTORY"].flatMap { $0.split(separator: ":").first.map(String.init) }
            ?? resolve("state")
        let stateDirectory = reader.string("state_directory").map(resolve) ?? defaultStateDirectory
        let pollInterval = reader.duration("poll_interval", default: .seconds(60), minimum: .milliseconds(1))
        let logLevel: Logger.Level? = reader.choice("log_level", default: .info)
        let maxOutbox = reader.integer("max_outbox", default: 100_000, in: 1...100_000_000)
        let pollTimeout = reader.duration("poll_timeout", default: .seconds(600), minimum: .seconds(1))
        let caFile = reader.string("ca_file").map(resolve)
        if let caFile, let problem = DefenderHTTPClient.checkCAFile(caFile) { reader.fail("ca_file", problem) }
        let proxyURL = reader.string("proxy_url")
        if let proxyURL, ProxySettings.parse(proxyURL) == nil {
            reader.fail("proxy_url", "\"\(proxyURL)\" is not a proxy URL such as http://proxy.example:3128 or http://user:password@proxy.example:3128")
        }
        reader.rejectUnknownKeys()
        guard let pollInterval, let logLevel, let maxOutbox, let pollTimeout else { return nil }
        return ServiceSettings(stateDirectory: stateDirectory, pollInterval: pollInterval, logLevel: logLevel, maxOutbox: maxOutbox,
                               pollTimeout: pollTimeout, caFile: caFile, proxyURL: proxyURL)
    }

    private func tenant(_ table: TOMLTable, index: Int, sinkNames: Set<String>) -> TenantConfiguration? {
        let reader = TableReader(table, location: "tenant[\(index)]", displayName: "tenant", report: report)
        let name = reader.string("name", required: true).flatMap { validName($0, key: "name", reader: reader) }
        let tenantID = reader.string("tenant_id", required: true).flatMap { validTenantID($0, reader: reader) }
        let clientID = reader.string("client_id", required: true).flatMap { validGUID($0, key: "client_id", reader: reader) }
        let credential = credential(reader)
        let cloud: Cloud? = reader.choice("cloud", default: Cloud.commercial)
        let region: Region? = reader.has("region") ? reader.choice("region", default: .us) : nil
        if region != nil, let cloud, cloud != .commercial {
            reader.fail("region", "regional hosts exist only in the commercial cloud, not in \(cloud.rawValue)")
        }
        let apiURL = reader.string("api_url").flatMap { validURL($0, key: "api_url", reader: reader) }
        let loginURL = reader.string("login_url").flatMap { validURL($0, key: "login_url", reader: reader) }
        let tokenVersion: TokenEndpointVersion? = reader.choice("token_version", default: .v2)
        let algorithm: CertificateCredential.Algorithm? = reader.choice("certificate_algorithm", default: .ps256)
        let perMinute = reader.integer("rate_limit_per_minute", default: 100, in: 1...100)
        let perHour = reader.integer("rate_limit_per_hour", default: 1500, in: 1...1500)
        let lookback = reader.duration("lookback", default: .seconds(24 * 3600), minimum: .seconds(1))
        let overlap = reader.duration("overlap", default: .seconds(15 * 60))
        let pageSize = reader.integer("page_size", default: 1000, in: 1...10_000)
        let expandEvidence = reader.bool("expand_evidence", default: true)
        let forward: ForwardMode? = reader.choice("forward", default: ForwardMode.new)
        let severities = reader.stringList("severity", from: knownSeverities)
        let statuses = reader.stringList("status", from: knownStatuses)
        let sinks = reader.stringList("sinks")
        for sink in sinks ?? [] where !sinkNames.contains(sink) {
            let defined = sinkNames.isEmpty ? "no valid sink is defined" : "defined: " + sinkNames.sorted().joined(separator: ", ")
            reader.fail("sinks", "no [[sink]] is named \"\(sink)\"; \(defined)")
        }
        reader.rejectUnknownKeys(hints: [
            "client_secret": "inline secrets are not allowed; put the secret in a file readable only by the daemon (client_secret_file) or in a systemd credential (client_secret_credential)",
            "private_key": "inline keys are not allowed; use private_key_file or private_key_credential",
        ])
        guard let name, let tenantID, let clientID, let credential, let cloud, let lookback, let overlap,
            let pageSize, let expandEvidence, let forward, let tokenVersion, let algorithm, let perMinute, let perHour
        else { return nil }
        if case .certificate(_, let pem, let key, _) = credential {
            do {
                _ = try CertificateCredential(certificatePEM: pem, privateKeyPEM: key, algorithm: algorithm)
            } catch {
                reader.fail("certificate_file", error.description)
                return nil
            }
        }
        return TenantConfiguration(
            name: name, tenantID: tenantID, clientID: clientID, credential: credential, cloud: cloud,
            region: region, apiURL: apiURL, loginURL: loginURL, tokenVersion: tokenVersion, certificateAlgorithm: algorithm,
            rateLimitPerMinute: perMinute, rateLimitPerHour: perHour, lookback: lookback, overlap: overlap,
            pageSize: pageSize, expandEvidence: expandEvidence, forward: forward,
            severities: severities, statuses: statuses, sinkNames: sinks
        )
    }

    private func credential(_ reader: TableReader) -> TenantCredential? {
        let sources = ["client_secret_file", "client_secret_credential", "certificate_file"].filter(reader.has)
        let secretFile = reader.string("client_secret_file")
        let secretCredential = reader.string("client_secret_credential")
        let certificateFile = reader.string("certificate_file")
        let keyFile = reader.string("private_key_file")
        let keyCredential = reader.string("private_key_credential")

        guard sources.count == 1 else {
            reader.fail(nil, sources.isEmpty
                ? "no credential: set exactly one of client_secret_file, client_secret_credential or certificate_file (with private_key_file or private_key_credential)"
                : "several credentials (\(sources.joined(separator: ", "))): set exactly one")
            return nil
        }
        if certificateFile == nil, reader.has("private_key_file") || reader.has("private_key_credential") {
            reader.fail(reader.has("private_key_file") ? "private_key_file" : "private_key_credential",
                        "a private key is only used with certificate_file")
            return nil
        }
        if let secretFile {
            let location = SecretLocation.file(resolve(secretFile))
            return readSecret(location, key: "client_secret_file", reader: reader).map { .clientSecret($0, from: location) }
        }
        if let secretCredential {
            guard let location = credentialLocation(secretCredential, key: "client_secret_credential", reader: reader) else { return nil }
            return readSecret(location, key: "client_secret_credential", reader: reader).map { .clientSecret($0, from: location) }
        }
        guard let certificateFile else { return nil }
        let certificatePath = resolve(certificateFile)
        let certificatePEM = readCertificate(certificatePath, reader: reader)
        let keyLocation: SecretLocation?
        let keyKey: String
        switch (keyFile, keyCredential) {
        case (let file?, nil):
            keyLocation = .file(resolve(file))
            keyKey = "private_key_file"
        case (nil, let name?):
            keyLocation = credentialLocation(name, key: "private_key_credential", reader: reader)
            keyKey = "private_key_credential"
        case (nil, nil):
            if !reader.has("private_key_file"), !reader.has("private_key_credential") {
                reader.fail("certificate_file", "needs private_key_file or private_key_credential")
            }
            return nil
        case (_?, _?):
            reader.fail("private_key_credential", "set only one of private_key_file and private_key_credential")
            return nil
        }
        guard let keyLocation, let key = readSecret(keyLocation, key: keyKey, reader: reader), let certificatePEM else { return nil }
        guard key.withValue({ $0.contains("PRIVATE KEY-----") }) else {
            reader.fail(keyKey, "\(keyLocation.path) holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
            return nil
        }
        return .certificate(certificateFile: certificatePath, certificatePEM: certificatePEM, privateKey: key, from: keyLocation)
    }

    private func readSecret(_ location: SecretLocation, key: String, reader: TableReader) -> Secret? {
        do {
            return try secrets.read(location.path)
        } catch {
            reader.fail(key, error.message)
            return nil
        }
    }

    private func credentialLocation(_ name: String, key: String, reader: TableReader) -> SecretLocation? {
        guard name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.@".contains($0) }), !name.hasPrefix(".") else {
            reader.fail(key, "\"\(name)\" is not a credential name (letters, digits, -, _, ., @)")
            return nil
        }
        guard let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
            reader.fail(key, "CREDENTIALS_DIRECTORY is not set: systemd credentials exist only under a unit with LoadCredential=\(name):/path/to/file (or SetCredentialEncrypted=); use client_secret_file outside systemd")
            return nil
        }
        return .credential(name: name, path: directory + "/" + name)
    }

    private func readCertificate(_ path: String, reader: TableReader) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else {
            reader.fail("certificate_file", FileManager.default.fileExists(atPath: path)
                ? "\(path) cannot be read" : "\(path) does not exist")
            return nil
        }
        let text = String(decoding: data, as: UTF8.self)
        guard text.contains("-----BEGIN CERTIFICATE-----") else {
            reader.fail("certificate_file", "\(path) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
            return nil
        }
        return text
    }

    private func sink(_ table: TOMLTable, index: Int) -> SinkConfiguration? {
        let reader = TableReader(table, location: "sink[\(index)]", displayName: "sink", report: report)
        let name = reader.string("name", required: true).flatMap { validName($0, key: "name", reader: reader) }
        let type = reader.choice("type", from: ["journal", "stdout", "file", "syslog", "http"], required: true)
        let kind: SinkConfiguration.Kind?
        switch type {
        case "journal":
            kind = .journal
        case "stdout":
            kind = reader.choice("format", default: RecordFormat.alert).map { .stdout(format: $0) }
        case "file":
            let path = reader.string("path", required: true).map(resolve)
            let format: RecordFormat? = reader.choice("format", default: RecordFormat.alert)
            let maxSize = reader.byteSize("max_size", default: 100_000_000)
            let maxFiles = reader.integer("max_files", default: 5, in: 0...1000)
            if let path, let format, let maxSize, let maxFiles {
                kind = .file(path: path, format: format, maxSize: maxSize, maxFiles: maxFiles)
            } else {
                kind = nil
            }
        case let planned?:
            reader.fail("type", "sink type \"\(planned)\" is not available in this version; available: journal, stdout, file")
            kind = nil
        case nil:
            kind = nil
        }
        // The keys of an unavailable or invalid type are not judged again as unknown.
        if ["journal", "stdout", "file"].contains(type) { reader.rejectUnknownKeys() }
        guard let name, let kind else { return nil }
        return SinkConfiguration(name: name, kind: kind)
    }

    // MARK: Values

    private func validName(_ name: String, key: String, reader: TableReader) -> String? {
        guard name.count <= 64, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            reader.fail(key, "\"\(name)\" is not a valid name: use \(Self.namePattern)")
            return nil
        }
        return name
    }

    private func validGUID(_ text: String, key: String, reader: TableReader) -> String? {
        guard UUID(uuidString: text) != nil else {
            reader.fail(key, "\"\(text)\" is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx); copy the Application (client) ID from the app registration's overview page")
            return nil
        }
        return text.lowercased()
    }

    private func validTenantID(_ text: String, reader: TableReader) -> String? {
        if UUID(uuidString: text) != nil { return text.lowercased() }
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        let isDomain = labels.count >= 2 && labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
        guard isDomain else {
            reader.fail("tenant_id", "\"\(text)\" is neither a GUID nor a domain name such as contoso.onmicrosoft.com")
            return nil
        }
        return text.lowercased()
    }

    private func validURL(_ text: String, key: String, reader: TableReader) -> String? {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty, ["http", "https"].contains(scheme),
            components.query == nil, components.fragment == nil
        else {
            reader.fail(key, "\"\(text)\" is not an http(s) base URL such as https://host[:port][/path]")
            return nil
        }
        let loopback = host == "localhost" || host.hasPrefix("127.") || host == "::1" || host == "[::1]"
        guard scheme == "https" || loopback else {
            reader.fail(key, "plain http is allowed only to loopback addresses; tokens and alerts must not cross a network unencrypted: use https://")
            return nil
        }
        return text.hasSuffix("/") ? String(text.dropLast()) : text
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
