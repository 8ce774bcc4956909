import Testing

@testable import AlertForwarder

@Suite("syslog messages")
struct SyslogMessageTests {
    static let alert =
        #"{"id":"da638394803045614062_-1227924097","severity":"High","title":"Suspicious \"LSASS\" access","#
        + #""lastUpdateTime":"2026-11-25T19:51:56.1234567Z","computerDnsName":"ws-hr-0031.corp.contoso.com"}"#

    func record(_ payload: String = alert, tenant: String = "contoso", event: String = "created") -> OutboxRecord {
        OutboxRecord(
            id: 1, sink: "siem", tenant: tenant, alertID: "da638394803045614062_-1227924097", event: event,
            receivedAt: "2026-11-25T19:52:03Z", payload: payload)
    }

    func text(_ message: SyslogMessage, _ record: OutboxRecord) -> String {
        String(decoding: message.bytes(for: record, body: record.payloadBytes), as: UTF8.self)
    }

    @Test func rfc5424() {
        let message = SyslogMessage(hostname: "collector01")
        // local0 (16) * 8 + High (2 crit) = 130; six fraction digits at most.
        #expect(
            text(message, record()) == "<130>1 2026-11-25T19:51:56.123456Z collector01 defender-alertd - created "
                + #"[defender@32473 alertId="da638394803045614062_-1227924097" tenant="contoso" severity="High" event="created" kind="alert"] "#
                + Self.alert)
    }

    /// An incident has a MSGID and parameters of its own, so that a receiver routes it apart.
    @Test func anIncidentSaysSo() {
        var incident = record(event: "updated")
        incident.kind = .incident
        incident.alertID = "29"
        let line = text(SyslogMessage(hostname: "h"), incident)
        #expect(
            line.contains(
                #" defender-alertd - incident-updated [defender@32473 incidentId="29" tenant="contoso" severity="High" event="updated" kind="incident"] "#
            ), "\(line)")
    }

    @Test func structuredDataEscapesQuotesBackslashesAndBrackets() {
        let message = SyslogMessage(facility: .auth, hostname: "h", enterpriseNumber: 99999)
        let line = text(message, record(tenant: #"a"b\c]d é"#, event: "updated"))
        // auth (4) * 8 + High (2) = 34.
        #expect(
            line.contains(
                #"[defender@99999 alertId="da638394803045614062_-1227924097" tenant="a\"b\\c\]d é" severity="High" event="updated" kind="alert"]"#))
        #expect(line.hasPrefix("<34>1 "))
    }

    @Test func headerFieldsArePrintableASCIIAndCut() {
        #expect(SyslogMessage.header("host name\té", 255) == "host_name__")
        #expect(SyslogMessage.header("", 48) == "-")
        #expect(SyslogMessage.header(String(repeating: "a", count: 60), 48).count == 48)
        let line = text(SyslogMessage(hostname: "my host", appName: String(repeating: "x", count: 50)), record())
        #expect(line.contains(" my_host \(String(repeating: "x", count: 48)) - created "))
    }

    @Test func severityAndTimeFromTheAlertOrFallbacks() {
        let message = SyslogMessage(facility: .local7, hostname: "h")
        let noTime = #"{"id":"x","severity":"Informational"}"#
        // local7 (23) * 8 + Informational (5) = 189; no lastUpdateTime: the time it was stored.
        #expect(text(message, record(noTime)).hasPrefix("<189>1 2026-11-25T19:52:03Z h "))
        let unknown = #"{"id":"x","severity":"SomethingNew","lastUpdateTime":"2026-11-25T19:51:56Z"}"#
        #expect(text(message, record(unknown)).hasPrefix("<190>1 2026-11-25T19:51:56Z "))
    }

    @Test func rfc3164() {
        let message = SyslogMessage(syslogProtocol: .rfc3164, hostname: "collector01")
        #expect(text(message, record()) == "<130>Nov 25 19:51:56 collector01 defender-alertd: " + Self.alert)
        let early = #"{"id":"x","severity":"Low","lastUpdateTime":"2026-03-05T01:02:03Z"}"#
        #expect(text(message, record(early)).hasPrefix("<132>Mar  5 01:02:03 collector01 defender-alertd: {"))
    }

    @Test func facilitiesHaveTheirCodes() {
        #expect(SyslogFacility.kern.code == 0)
        #expect(SyslogFacility.authpriv.code == 10)
        #expect(SyslogFacility.solarisCron.code == 15)
        #expect(SyslogFacility.local0.code == 16)
        #expect(SyslogFacility.local7.code == 23)
    }
}

@Suite("syslog framing")
struct SyslogFramingTests {
    @Test func octetCountingCountsBytesNotCharacters() {
        let message = Array("<130>1 - - - - - - é\n{}".utf8)
        #expect(SyslogFraming.octetCounting.frame(message) == Array("\(message.count) ".utf8) + message)
        #expect(message.count == 24)  // é is two bytes, the line break is kept
    }

    @Test func lineFeedFramingNeverSplitsAMessage() {
        let message = Array("<130>1 x {\"a\":\r\n 1}".utf8)
        #expect(String(decoding: SyslogFraming.lf.frame(message), as: UTF8.self) == "<130>1 x {\"a\":   1}\n")
    }
}

@Suite("syslog addresses")
struct SyslogAddressTests {
    @Test(arguments: [
        ("udp://siem.example", "udp://siem.example:514"),
        ("tcp://siem.example:1601", "tcp://siem.example:1601"),
        ("TLS://10.1.2.3", "tls://10.1.2.3:6514"),
        ("relp://collector-01.corp", "relp://collector-01.corp:2514"),
        ("tcp://[::1]:601", "tcp://[::1]:601"),
        ("tls://[2001:db8::5]", "tls://[2001:db8::5]:6514"),
        ("tcp://127.0.0.1:601/", "tcp://127.0.0.1:601"),
    ])
    func validAddresses(text: String, expected: String) throws {
        #expect(try SyslogAddress.parse(text).get().description == expected)
    }

    @Test(arguments: [
        ("siem.example:514", "no scheme"),
        ("http://siem.example", "unknown scheme \"http\""),
        ("tcp://", "no host"),
        ("tcp://::1:601", "IPv6 address goes in brackets"),
        ("tcp://[::1", "closing ]"),
        ("tcp://[siem.example]:601", "IPv6 addresses only"),
        ("tcp://[::1]x", "only :port"),
        ("udp://siem.example:0", "1 to 65535"),
        ("udp://siem.example:70000", "1 to 65535"),
        ("udp://siem.example:syslog", "1 to 65535"),
        ("tcp://siem example:601", "not a host name"),
    ])
    func invalidAddresses(text: String, reason: String) {
        guard case .failure(let error) = SyslogAddress.parse(text) else {
            Issue.record("\(text) was accepted"); return
        }
        #expect(error.description.contains(reason), "\(error)")
    }
}
