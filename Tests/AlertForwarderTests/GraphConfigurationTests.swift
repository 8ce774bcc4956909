import AlertForwarder
import DefenderAPI
import Foundation
import TestSupport
import Testing

/// `api = "graph"`: the keys and values that make sense only for one API are refused for the
/// other with file, line and key, and each API gets its own defaults.
@Suite("Configuration: api = \"graph\" and what only one API understands")
struct GraphConfigurationTests {
    let fixture = ConfigFixture()
    var path: String { fixture.directory.file("defender-alertd.toml") }

    /// The only error of a tenant with `api` and `lines` (each on its own line after line 6).
    func error(api: String, _ lines: String) throws -> ConfigurationError {
        let errors = fixture.errors(ConfigFixture.tenant + "\napi = \"\(api)\"\n" + lines + "\n" + ConfigFixture.sink)
        #expect(errors.count == 1, "\(errors)")
        return try #require(errors.first)
    }

    @Test func graphDefaultsAreGraphs() throws {
        let configuration = try fixture.load(ConfigFixture.tenant + "\napi = \"graph\"\n" + ConfigFixture.sink)
        let tenant = try #require(configuration.tenants.first)
        #expect(tenant.api == .graph)
        #expect((tenant.rateLimitPerMinute, tenant.rateLimitPerHour) == (150, 9000))
        #expect(tenant.endpoints.alertsURL == "https://graph.microsoft.com/v1.0/security/alerts_v2")
        #expect(tenant.endpoints.resource == "https://graph.microsoft.com")
    }

    @Test(arguments: [("gcc", "https://graph.microsoft.com"), ("gcc-high", "https://graph.microsoft.us"), ("dod", "https://dod-graph.microsoft.us")])
    func eachCloudHasItsGraphHost(cloud: String, host: String) throws {
        let configuration = try fixture.load(ConfigFixture.tenant + "\napi = \"graph\"\ncloud = \"\(cloud)\"\n" + ConfigFixture.sink)
        let endpoints = try #require(configuration.tenants.first).endpoints
        #expect(endpoints.apiBase == host && endpoints.resource == host)
        #expect(endpoints.loginBase == (cloud == "gcc" ? "https://login.microsoftonline.com" : "https://login.microsoftonline.us"))
    }

    @Test func graphValuesAreSpelledAsGraphSpellsThem() throws {
        let configuration = try fixture.load(
            ConfigFixture.tenant + """

                api = "graph"
                severity = ["High", "medium"]
                status = ["inprogress", "new"]
                service_source = ["microsoftDefenderForOffice365", "microsoftdefenderforendpoint"]

                """ + ConfigFixture.sink)
        let tenant = try #require(configuration.tenants.first)
        #expect(tenant.severities == ["high", "medium"])
        #expect(tenant.statuses == ["inProgress", "new"])
        #expect(tenant.serviceSources == ["microsoftDefenderForOffice365", "microsoftDefenderForEndpoint"])
    }

    @Test func anMDESeverityWithGraphIsNamedAsOne() throws {
        let error = try error(api: "graph", #"severity = ["UnSpecified", "High"]"#)
        #expect(error.line == 7 && error.key == "tenant.severity", "\(error)")
        #expect(error.message.contains("\"UnSpecified\" is an MDE severity"), "\(error)")
        #expect(error.message.contains("unknown, informational, low, medium, high"))
        #expect(error.description.hasPrefix("\(path):7: tenant.severity:"))
    }

    @Test(arguments: [
        ("graph", #"expand_evidence = true"#, "tenant.expand_evidence", "always sends the alerts' evidence"),
        ("graph", #"region = "eu""#, "tenant.region", "one host per cloud"),
        ("graph", "page_size = 5000", "tenant.page_size", "1000"),
        ("graph", "rate_limit_per_minute = 151", "tenant.rate_limit_per_minute", "out of range"),
        ("mde", "rate_limit_per_minute = 150", "tenant.rate_limit_per_minute", "(100)"),
        ("mde", "rate_limit_per_hour = 2000", "tenant.rate_limit_per_hour", "(1500)"),
        ("mde", #"service_source = ["microsoftDefenderForEndpoint"]"#, "tenant.service_source", "Endpoint alerts only"),
        ("graph", #"service_source = ["office"]"#, "tenant.service_source", "microsoftDefenderForOffice365"),
        ("mde", #"status = ["inProgress", "Closed"]"#, "tenant.status", "Unknown, New, InProgress, Resolved"),
    ])
    func aKeyOrValueTheAPIDoesNotKnowIsRefusedWithItsLine(api: String, line: String, key: String, says: String) throws {
        let error = try error(api: api, line)
        #expect(error.line == 7, "\(error)")
        #expect(error.key == key, "\(error)")
        #expect(error.message.contains(says), "\(error)")
    }
}
