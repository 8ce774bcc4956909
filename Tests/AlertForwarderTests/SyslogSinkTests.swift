@testable import AlertForwarder
import DefenderAPI
import Foundation
import Testing
import TestSupport

/// The syslog sink against a real rsyslog on loopback, over every transport.
@Suite("Syslog sink against rsyslog", .enabled(if: RsyslogReceiver.isInstalled, "needs rsyslogd with imrelp and GnuTLS: Debian's rsyslog, rsyslog-relp, rsyslog-gnutls"))
struct SyslogSinkTests {
    static func record(_ id: Int64, title: String = "Suspicious 'LSASS' access", severity: String = "High", padding: Int = 0) -> OutboxRecord {
        let payload = #"{"id":"da\#(id)","incidentId":\#(id * 10),"severity":"\#(severity)","status":"New","title":"\#(title)","#
            + #""category":"CredentialAccess","detectorId":"7f1c","lastUpdateTime":"2026-11-25T19:51:56.1234567Z","#
            + #""computerDnsName":"ws-\#(id).contoso.com","relatedUser":{"userName":"jdoe","domainName":"CONTOSO"},"#
            + #""description":"\#(String(repeating: "x", count: padding))"}"#
        return OutboxRecord(id: id, sink: "siem", tenant: "contoso", alertID: "da\(id)", event: "created",
                            receivedAt: "2026-11-25T19:52:03Z", payload: payload)
    }

    static func settings(_ receiver: RsyslogReceiver, _ transport: SyslogAddress.Transport, format: SyslogBodyFormat = .json,
                         framing: SyslogFraming = .octetCounting, protocol syslogProtocol: SyslogProtocol = .rfc5424,
                         tls: SyslogTLS? = nil, host: String = "127.0.0.1", timeout: Duration = .seconds(10)) -> SyslogSettings {
        let input = RsyslogReceiver.Input(rawValue: transport.rawValue)!
        let address = SyslogAddress(transport: transport, host: host, port: receiver.ports[input]!)
        return SyslogSettings(address: address, message: SyslogMessage(syslogProtocol: syslogProtocol, hostname: "collector-1"),
                              format: format, framing: framing, timeout: timeout,
                              tls: tls ?? (transport == .tls ? SyslogTLS(caFile: receiver.directory.file("ca.pem")) : nil))
    }

    /// Sends three alerts; rsyslog's raw record of each is exactly the message sent.
    private func roundTrip(_ transport: SyslogAddress.Transport, framing: SyslogFraming = .octetCounting, format: SyslogBodyFormat = .json) async throws {
        let receiver = try RsyslogReceiver()
        try receiver.start()
        defer { receiver.stop() }
        let sink = SyslogSink(settings: Self.settings(receiver, transport, format: format, framing: framing))
        let records = (1...3).map { Self.record($0) }
        #expect(try await sink.send(records).isEmpty)
        await sink.shutdown()
        let input = RsyslogReceiver.Input(rawValue: transport.rawValue)!
        let received = receiver.waitForMessages(input, count: 3)
        #expect(received == records.map { String(decoding: sink.message(for: $0), as: UTF8.self) }, "\(receiver.log)")
    }

    @Test func udp() async throws { try await roundTrip(.udp) }
    @Test func tcpWithOctetCounting() async throws { try await roundTrip(.tcp) }
    @Test func tcpWithLineEnds() async throws { try await roundTrip(.tcp, framing: .lf) }
    @Test func tls() async throws { try await roundTrip(.tls) }
    @Test func relp() async throws { try await roundTrip(.relp) }
    @Test func cefOverTLS() async throws { try await roundTrip(.tls, format: .cef) }
}
