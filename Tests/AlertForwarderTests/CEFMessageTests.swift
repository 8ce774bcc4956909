@testable import AlertForwarder
import Testing

@Suite("CEF lines")
struct CEFMessageTests {
    func record(_ payload: String, event: String = "created") -> OutboxRecord {
        OutboxRecord(id: 1, sink: "siem", tenant: "contoso", alertID: "da1", event: event, receivedAt: "2026-11-25T19:52:03Z", payload: payload)
    }

    @Test func anAlertWithTheUsualFields() {
        let payload = #"{"id":"da1","incidentId":42,"severity":"High","status":"New","title":"Suspicious 'LSASS' access","#
            + #""category":"CredentialAccess","detectorId":"7f1c","detectionSource":"WindowsDefenderAtp","#
            + #""firstEventTime":"2026-11-25T19:50:00Z","lastEventTime":"2026-11-25T19:51:00.5Z","lastUpdateTime":"2026-11-25T19:51:56.1234567Z","#
            + #""computerDnsName":"ws-hr-0031.corp.contoso.com","machineId":"ab12","description":"a=b\nc"}"#
        #expect(CEFMessage.line(for: record(payload)) == "CEF:0|Microsoft|Defender for Endpoint|1.0|7f1c|Suspicious 'LSASS' access|8|"
            + "rt=1795636316123 start=1795636200000 end=1795636260500 dvchost=ws-hr-0031.corp.contoso.com deviceExternalId=ab12 externalId=da1 "
            + #"act=created msg=a\=b\nc cat=CredentialAccess cs1Label=AlertId cs1=da1 cs2Label=IncidentId cs2=42 cs3Label=Status cs3=New "#
            + "cs4Label=Tenant cs4=contoso cs5Label=DetectionSource cs5=WindowsDefenderAtp")
    }

    @Test func headerFieldsEscapePipesAndBackslashes() {
        let line = CEFMessage.line(for: record(#"{"id":"da1","severity":"Medium","title":"a|b\\c\r\nd","category":"x|y"}"#, event: "updated"))
        #expect(line.hasPrefix(#"CEF:0|Microsoft|Defender for Endpoint|1.0|x\|y|a\|b\\c d|5|externalId=da1 act=updated cat=x|y cs1Label=AlertId"#), "\(line)")
    }

    @Test func extensionValuesEscapeBackslashEqualsAndLineBreaks() {
        #expect(CEFMessage.extensionValue("C:\\x=1\r\n|") == #"C:\\x\=1\r\n|"#)
    }

    @Test func severities() {
        #expect(["High", "medium", "Low", "Informational", "UnSpecified", "New"].map(CEFMessage.severity) == [8, 5, 3, 1, 0, 0])
    }

    @Test func aMinimalAlertStillMakesALine() {
        #expect(CEFMessage.line(for: record(#"{"id":"da1"}"#)) == "CEF:0|Microsoft|Defender for Endpoint|1.0|alert|Defender alert|0|"
            + "externalId=da1 act=created cs1Label=AlertId cs1=da1 cs4Label=Tenant cs4=contoso")
    }

    @Test func theRelatedUserAndOptionallyTheWholeAlert() {
        let payload = #"{"id":"da1","relatedUser":{"userName":"jdoe","domainName":"CONTOSO"},"title":"t=1"}"#
        #expect(CEFMessage.line(for: record(payload)).contains(#"act=created duser=CONTOSO\\jdoe cs1Label"#))
        #expect(!CEFMessage.line(for: record(payload)).contains("cs6"))
        #expect(CEFMessage.line(for: record(payload), includeJSON: true).hasSuffix(
            #"cs6Label=AlertJson cs6={"id":"da1","relatedUser":{"userName":"jdoe","domainName":"CONTOSO"},"title":"t\=1"}"#))
        #expect(!CEFMessage.line(for: record(#"{"id":"da1","relatedUser":null}"#)).contains("duser"))
        #expect(CEFMessage.line(for: record(#"{"id":"da1","relatedUser":{"userName":"svc","domainName":null}}"#)).contains("duser=svc "))
    }
}
