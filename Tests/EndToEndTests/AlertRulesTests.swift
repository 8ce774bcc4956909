import Foundation
import Telemetry
import TestSupport
import Testing

/// The README's metrics documentation is true: every metric is listed, and the alert rules
/// are valid and fire when they should (Prometheus's own promtool).
@Suite("README: metrics and alert rules")
struct AlertRulesTests {
    static let readme = (try? String(contentsOfFile: repositoryRoot + "/README.md", encoding: .utf8)) ?? ""

    /// promtool from `make deps-promtool`, or one installed on the machine.
    static let promtool = [repositoryRoot + "/.build/tools/prometheus/root/usr/bin/promtool", "/usr/bin/promtool"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test func everyMetricIsDocumentedWithItsTypeAndLabels() {
        for family in MetricFamily.all {
            let labels = family.labels.map { "`\($0)`" }.joined(separator: ", ")
            #expect(Self.readme.contains("| `\(family.name)` | \(family.kind.rawValue) | \(labels) | \(family.help) |"), "\(family.name)")
        }
    }

    @Test(.enabled(if: promtool != nil, "promtool is missing: `make deps-promtool` takes it out of Debian's prometheus package"))
    func theAlertRulesAreValidAndFireWhenTheyShould() throws {
        let begin = try #require(Self.readme.range(of: "<!-- alert-rules:begin -->\n```yaml\n"))
        let end = try #require(Self.readme.range(of: "```\n<!-- alert-rules:end -->", range: begin.upperBound..<Self.readme.endIndex))
        let directory = TemporaryDirectory()
        let rules = directory.write("rules.yml", String(Self.readme[begin.upperBound..<end.lowerBound]))
        let test = directory.write("test.yml", try String(contentsOfFile: repositoryRoot + "/Tests/AlertRules/alert-rules-test.yml", encoding: .utf8))
        let promtool = try #require(Self.promtool)
        let check = try runToCompletion(promtool, ["check", "rules", rules])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("SUCCESS: 8 rules found"), "\(check.stdout)")
        let unit = try runToCompletion(promtool, ["test", "rules", test])
        #expect(unit.status == 0, "\(unit.stdout)\(unit.stderr)")
    }
}
