import DefenderAPI
import Foundation
import TestSupport
import Testing

@testable import AlertForwarder

/// The key table is the one source of truth: the loader reads exactly its keys with its
/// defaults, and the README's tables, the man page and the annotated example agree with it.
@Suite("Configuration reference")
struct ConfigurationReferenceTests {
    let fixture = ConfigFixture()

    /// A value of the right type for `key`, valid where that is easy.
    private func sample(_ key: ConfigurationKey) -> String {
        if let value = key.defaultValue { return value.toml }
        switch key.kind {
        case .string: return #""x""#
        case .path: return #""/nonexistent/x""#
        case .duration: return #""1s""#
        case .integer(let range): return String(range.lowerBound)
        case .boolean: return "true"
        case .size: return #""1MB""#
        case .choice(let values): return "\"\(values[0])\""
        case .list(let values): return "[\"\(values?.first ?? "journal")\"]"
        case .stringTable: return #"{ "X-Source" = "mde" }"#
        }
    }

    /// A small valid configuration with `key = value` added to the table it belongs to.
    private func configuration(with key: ConfigurationKey, value: String) -> String {
        let line = "\(key.name) = \(value)"
        let base = [ConfigFixture.tenant, ConfigFixture.sink]
        switch key.table {
        case .service:
            return (["[service]", line] + base).joined(separator: "\n")
        case .tenant:
            let tenant = ConfigFixture.tenant.split(separator: "\n").filter { !$0.hasPrefix(key.name + " ") }.joined(separator: "\n")
            return [tenant, line, ConfigFixture.sink].joined(separator: "\n")
        case .sink:
            let type = key.sinkTypes.first ?? "journal"
            var sink = ["[[sink]]", "name = \"journal\"", "type = \"\(type)\""]
            if type == "file", key.name != "path" { sink.append("path = \"alerts.jsonl\"") }
            if type == "syslog", key.name != "address" { sink.append("address = \"tls://siem.example\"") }
            if type == "http", key.name != "url" { sink.append("url = \"https://siem.example/services/collector/event\"") }
            if type == "http", key.name != "format" { sink.append("format = \"splunk-hec\"") }
            if type == "http", !["token_file", "token_credential", "format"].contains(key.name) { sink.append("token_file = \"secret\"") }
            sink = sink.filter { !$0.hasPrefix(key.name + " ") }
            return ([ConfigFixture.tenant] + sink + [line]).joined(separator: "\n")
        }
    }

    private func problems(_ text: String) -> [ConfigurationError] {
        do {
            _ = try fixture.load(text)
            return []
        } catch {
            return error.errors
        }
    }

    @Test("the loader reads every documented key", arguments: ConfigurationKey.all)
    func everyDocumentedKeyIsRead(_ key: ConfigurationKey) {
        let found = problems(configuration(with: key, value: sample(key)))
        let unknown = found.filter { $0.key == "\(key.table.rawValue).\(key.name)" && $0.message.hasPrefix("unknown key") }
        #expect(unknown.isEmpty, "\(key.table.header) \(key.name): \(unknown)")
    }

    @Test("a key the table does not describe is refused in every table", arguments: ConfigurationKey.Table.allCases)
    func undocumentedKeysAreRefused(_ table: ConfigurationKey.Table) {
        let key = ConfigurationKey(table, "not_a_documented_key", .string, "")
        let found = problems(configuration(with: key, value: #""x""#))
        #expect(found.contains { $0.key == "\(table.rawValue).not_a_documented_key" && $0.message.hasPrefix("unknown key") })
    }

    @Test("with every key absent, the loader uses the documented defaults")
    func absentKeysGetTheDocumentedDefaults() throws {
        let configuration = try fixture.load(ConfigFixture.tenant + "\n[[sink]]\nname = \"file\"\ntype = \"file\"\npath = \"a.jsonl\"")
        typealias S = ConfigurationKey.Service
        typealias T = ConfigurationKey.Tenant
        typealias K = ConfigurationKey.Sink
        let service = configuration.service, tenant = configuration.tenants[0]
        // The defaults as README.md and DESIGN's contract state them, written out here: the
        // loader is checked against the documents, not against the table it reads itself.
        #expect(service.pollInterval == .seconds(60))
        #expect(service.logLevel == .info)
        #expect(service.maxOutbox == 100_000)
        #expect(service.pollTimeout == .seconds(600))
        #expect(tenant.certificateAlgorithm == .ps256)
        #expect(tenant.cloud == .commercial)
        #expect(tenant.tokenVersion == .v2)
        #expect(tenant.api == .mde)
        #expect(tenant.lookback == .seconds(86_400))
        #expect(tenant.overlap == .seconds(900))
        #expect(tenant.pageSize == 1000)
        #expect(tenant.expandEvidence == true)
        #expect(tenant.forward == .new)
        // And the table that writes the README's reference says the same.
        let written: [(ConfigurationKey, String)] = [
            (S.pollInterval, "\"60s\""), (S.logLevel, "\"info\""), (S.maxOutbox, "100000"), (S.pollTimeout, "\"10m\""),
            (T.certificateAlgorithm, "\"PS256\""), (T.cloud, "\"commercial\""), (T.tokenVersion, "\"v2\""), (T.api, "\"mde\""),
            (T.lookback, "\"24h\""), (T.overlap, "\"15m\""), (T.pageSize, "1000"), (T.expandEvidence, "true"), (T.forward, "\"new\""),
        ]
        for (key, value) in written {
            #expect(key.defaultValue?.toml == value, "\(key.name)")
        }
        #expect(tenant.region == nil && tenant.severities == nil && tenant.statuses == nil && tenant.serviceSources == nil && tenant.sinkNames == nil)
        // The call limits default to the API's own (MDE here), as their description says.
        #expect((tenant.rateLimitPerMinute, tenant.rateLimitPerHour) == AlertsAPI.mde.callLimits)
        #expect(
            T.rateLimitPerMinute.defaultText.contains("\(AlertsAPI.mde.callLimits.perMinute) (`mde`)")
                && T.rateLimitPerMinute.defaultText.contains("\(AlertsAPI.graph.callLimits.perMinute) (`graph`)"))
        // The file sink's defaults, read back through the same key table's parsers.
        guard case .string(let format)? = K.format.defaultValue, case .string(let size)? = K.maxSize.defaultValue,
            case .integer(let files)? = K.maxFiles.defaultValue
        else {
            Issue.record("the file sink keys lost their defaults")
            return
        }
        #expect(
            configuration.sinks[0].kind
                == .file(
                    path: fixture.directory.file("a.jsonl"), format: RecordFormat(rawValue: format)!,
                    maxSize: TableReader.parseSize(size)!, maxFiles: files))
        // Every key with a fixed default has a default the loader itself accepts.
        for key in ConfigurationKey.all where key.defaultValue != nil {
            let found = problems(self.configuration(with: key, value: key.defaultValue!.toml))
            #expect(!found.contains { $0.key == "\(key.table.rawValue).\(key.name)" }, "\(key.name): \(found)")
        }
    }

    @Test("the README's configuration tables are the generated ones")
    func readmeTablesAreGenerated() throws {
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        let begin = try #require(readme.range(of: "<!-- config-reference:begin"), "README.md has no config-reference:begin marker")
        let end = try #require(readme.range(of: "\n<!-- config-reference:end -->"), "README.md has no config-reference:end marker")
        let afterBegin = try #require(readme[begin.upperBound...].firstIndex(of: "\n"))
        let committed = String(readme[readme.index(after: afterBegin)..<end.lowerBound])
        #expect(committed == ConfigurationReference.markdown(), "README.md's configuration tables are stale: run `make docs`")
    }

    /// Each `key = value` line of the annotated example, commented out or not, by table.
    private func exampleEntries() throws -> [(table: ConfigurationKey.Table, sinkType: String?, key: String, value: String)] {
        let example = try String(contentsOfFile: packageRoot + "/config/defender-alertd.toml", encoding: .utf8)
        var entries: [(ConfigurationKey.Table, String?, String, String)] = []
        var table: ConfigurationKey.Table?
        var sinkType: String?
        let assignment = /^#?\s?([a-z_]+) = (.+)$/
        for line in example.split(separator: "\n", omittingEmptySubsequences: false) {
            let bare = line.hasPrefix("# ") ? line.dropFirst(2) : line[...]
            if let header = ConfigurationKey.Table.allCases.first(where: { $0.header == bare }) {
                table = header
                sinkType = nil
                continue
            }
            guard let table, let match = line.wholeMatch(of: assignment) else { continue }
            let key = String(match.1), value = String(match.2)
            if table == .sink, key == "type" { sinkType = value.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            entries.append((table, table == .sink ? sinkType : nil, key, value))
        }
        return entries
    }

    @Test("the annotated example shows every key, with its default, and no other key")
    func exampleDocumentsEveryKey() throws {
        let entries = try exampleEntries()
        for key in ConfigurationKey.all {
            // A name may be several keys, one per sink type (`format`).
            let mentions = entries.filter {
                $0.table == key.table && $0.key == key.name && (key.sinkTypes.isEmpty || key.sinkTypes.contains($0.sinkType ?? ""))
            }
            #expect(!mentions.isEmpty, "config/defender-alertd.toml does not show \(key.table.header) \(key.name)")
            if let value = key.defaultValue {
                #expect(
                    mentions.contains { $0.value == value.toml },
                    "config/defender-alertd.toml shows \(key.name) = \(mentions.map(\.value)), the default is \(value.toml)")
            }
            for sinkType in key.sinkTypes {
                #expect(mentions.contains { $0.sinkType == sinkType }, "config/defender-alertd.toml: no \(sinkType) sink shows \(key.name)")
            }
        }
        for entry in entries {
            let key =
                ConfigurationKey.all.first {
                    $0.table == entry.table && $0.name == entry.key && ($0.sinkTypes.isEmpty || $0.sinkTypes.contains(entry.sinkType ?? ""))
                }
                ?? ConfigurationKey.all.first { $0.table == entry.table && $0.name == entry.key }
            #expect(key != nil, "config/defender-alertd.toml shows \(entry.table.header) \(entry.key), which the loader does not know")
            if let key, !key.sinkTypes.isEmpty, let type = entry.sinkType {
                #expect(key.sinkTypes.contains(type), "config/defender-alertd.toml shows \(key.name) on a \(type) sink")
            }
        }
    }

    @Test(
        "the man page documents every key and groff reads it without a warning",
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/groff"), "needs groff (Debian's groff-base)"))
    func manPageIsCleanRoff() throws {
        let page = ConfigurationReference.manPage(version: "0.0.0", date: "2026-01-01")
        for key in ConfigurationKey.all {
            #expect(page.contains(".B \(ConfigurationReference.roff(key.name))\n"), "\(key.name)")
        }
        let directory = TemporaryDirectory()
        let path = directory.write("defender-alertd.toml.5", page)
        let result = try runToCompletion("/usr/bin/groff", ["-man", "-ww", "-z", path])
        #expect(result.status == 0)
        #expect(result.stderr.isEmpty, "groff: \(result.stderr)")
        let text = try runToCompletion("/usr/bin/groff", ["-man", "-Tutf8", path]).stdout
        #expect(text.contains("poll_interval") && text.contains("default: \"60s\""))
    }
}
