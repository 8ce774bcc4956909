import Foundation
import OrderedJSON
import TestSupport
import Testing

@testable import AlertForwarder

@Suite("CEF lines")
struct CEFMessageTests {
    func record(_ payload: String, event: String = "created") -> OutboxRecord {
        OutboxRecord(id: 1, sink: "siem", tenant: "contoso", alertID: "da1", event: event, receivedAt: "2026-11-25T19:52:03Z", payload: payload)
    }

    @Test func anAlertWithTheUsualFields() {
        let payload =
            #"{"id":"da1","incidentId":42,"severity":"High","status":"New","title":"Suspicious 'LSASS' access","#
            + #""category":"CredentialAccess","detectorId":"7f1c","detectionSource":"WindowsDefenderAtp","#
            + #""firstEventTime":"2026-11-25T19:50:00Z","lastEventTime":"2026-11-25T19:51:00.5Z","lastUpdateTime":"2026-11-25T19:51:56.1234567Z","#
            + #""computerDnsName":"ws-hr-0031.corp.contoso.com","machineId":"ab12","description":"a=b\nc"}"#
        #expect(
            CEFMessage.line(for: record(payload)) == "CEF:0|Microsoft|Defender for Endpoint|1.0|7f1c|Suspicious 'LSASS' access|8|"
                + "rt=1795636316123 start=1795636200000 end=1795636260500 dvchost=ws-hr-0031.corp.contoso.com deviceExternalId=ab12 externalId=da1 "
                + #"act=created msg=a\=b\nc cat=CredentialAccess cs1Label=AlertId cs1=da1 cs2Label=IncidentId cs2=42 cs3Label=Status cs3=New "#
                + "cs4Label=Tenant cs4=contoso cs5Label=DetectionSource cs5=WindowsDefenderAtp")
    }

    @Test func aGraphAlertWithItsOwnNames() throws {
        // The first alert of Graph's documented page: its time fields, device and user come
        // from Graph's names and typed evidence; the product is the service that raised it.
        let page = try String(contentsOfFile: packageRoot + "/Tests/Fixtures/graph-alerts-v2-page.json", encoding: .utf8)
        let object = try #require(try JSONValue(parsing: page)["value"].flatMap { if case .array(let items) = $0 { items.first } else { nil } })
        let line = CEFMessage.line(for: record(object.serialized))
        #expect(
            line.hasPrefix("CEF:0|Microsoft|Defender for Endpoint|1.0|6f1c2d8e-0b4a-4c7e-9d35-a2e81f47c0b9|Suspicious access to LSASS service|8|"),
            "\(line)")
        #expect(
            line.contains(
                "rt=1741943645460 start=1741943402551 end=1741943403019 dvchost=ws-fin-0142.corp.contoso.com deviceExternalId=3fa9c81b7e20d45c6a1b09e8f7d2c4a5b6e13d90"
            ), "\(line)")
        #expect(
            line.contains(#"duser=CONTOSO\\jdoe"#) && line.contains("cs2=48213 cs3Label=Status cs3=new")
                && line.contains("cs5=microsoftDefenderForEndpoint"), "\(line)")
        // Another service's alert names its product.
        var office = object
        office.set("productName", .string("Microsoft Defender for Office 365"))
        #expect(CEFMessage.line(for: record(office.serialized)).hasPrefix("CEF:0|Microsoft|Defender for Office 365|1.0|"))
        // The headline of the journal and of `summary` lines.
        let headline = AlertHeadline(payload: Array(object.serialized.utf8))
        #expect(
            (headline.severity, headline.title, headline.host, headline.status, headline.time)
                == ("high", "Suspicious access to LSASS service", "ws-fin-0142.corp.contoso.com", "new", "2025-03-14T09:14:05Z"))
    }

    @Test func evidenceThatIsNoArrayLeavesTheOtherFieldsReadable() {
        let headline = AlertHeadline(payload: Array(#"{"id":"da1","severity":"Low","title":"t","computerDnsName":"ws1","evidence":null}"#.utf8))
        #expect((headline.severity, headline.title, headline.host) == ("Low", "t", "ws1"))
    }

    @Test func headerFieldsEscapePipesAndBackslashes() {
        let line = CEFMessage.line(for: record(#"{"id":"da1","severity":"Medium","title":"a|b\\c\r\nd","category":"x|y"}"#, event: "updated"))
        #expect(
            line.hasPrefix(#"CEF:0|Microsoft|Defender for Endpoint|1.0|x\|y|a\|b\\c d|5|externalId=da1 act=updated cat=x|y cs1Label=AlertId"#),
            "\(line)")
    }

    @Test func extensionValuesEscapeBackslashEqualsAndLineBreaks() {
        #expect(CEFMessage.extensionValue("C:\\x=1\r\n|") == #"C:\\x\=1\r\n|"#)
    }

    @Test func severities() {
        #expect(["High", "medium", "Low", "Informational", "UnSpecified", "New"].map(CEFMessage.severity) == [8, 5, 3, 1, 0, 0])
    }

    @Test func aMinimalAlertStillMakesALine() {
        #expect(
            CEFMessage.line(for: record(#"{"id":"da1"}"#)) == "CEF:0|Microsoft|Defender for Endpoint|1.0|alert|Defender alert|0|"
                + "externalId=da1 act=created cs1Label=AlertId cs1=da1 cs4Label=Tenant cs4=contoso")
    }

    @Test func theRelatedUserAndOptionallyTheWholeAlert() {
        let payload = #"{"id":"da1","relatedUser":{"userName":"jdoe","domainName":"CONTOSO"},"title":"t=1"}"#
        #expect(CEFMessage.line(for: record(payload)).contains(#"act=created duser=CONTOSO\\jdoe cs1Label"#))
        #expect(!CEFMessage.line(for: record(payload)).contains("cs6"))
        #expect(
            CEFMessage.line(for: record(payload), includeJSON: true).hasSuffix(
                #"cs6Label=AlertJson cs6={"id":"da1","relatedUser":{"userName":"jdoe","domainName":"CONTOSO"},"title":"t\=1"}"#))
        #expect(!CEFMessage.line(for: record(#"{"id":"da1","relatedUser":null}"#)).contains("duser"))
        #expect(CEFMessage.line(for: record(#"{"id":"da1","relatedUser":{"userName":"svc","domainName":null}}"#)).contains("duser=svc "))
    }
}
