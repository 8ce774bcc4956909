import DefenderAPI
import Foundation
import TestSupport
import Testing

@testable import AlertForwarder

/// The syslog sink against a real rsyslog on loopback, over every transport.
@Suite(
    "Syslog sink against rsyslog",
    .enabled(if: RsyslogReceiver.isInstalled, "needs rsyslogd with imrelp and GnuTLS: Debian's rsyslog, rsyslog-relp, rsyslog-gnutls"))
struct SyslogSinkTests {
    static func record(_ id: Int64, title: String = "Suspicious 'LSASS' access", severity: String = "High", padding: Int = 0) -> OutboxRecord {
        let payload =
            #"{"id":"da\#(id)","incidentId":\#(id * 10),"severity":"\#(severity)","status":"New","title":"\#(title)","#
            + #""category":"CredentialAccess","detectorId":"7f1c","lastUpdateTime":"2026-11-25T19:51:56.1234567Z","#
            + #""computerDnsName":"ws-\#(id).contoso.com","relatedUser":{"userName":"jdoe","domainName":"CONTOSO"},"#
            + #""description":"\#(String(repeating: "x", count: padding))"}"#
        return OutboxRecord(
            id: id, sink: "siem", tenant: "contoso", alertID: "da\(id)", event: "created",
            receivedAt: "2026-11-25T19:52:03Z", payload: payload)
    }

    static func settings(
        _ receiver: RsyslogReceiver, _ transport: SyslogAddress.Transport, format: SyslogBodyFormat = .json,
        framing: SyslogFraming = .octetCounting, protocol syslogProtocol: SyslogProtocol = .rfc5424,
        tls: SyslogTLS? = nil, host: String = "127.0.0.1", timeout: Duration = .seconds(10)
    ) -> SyslogSettings {
        let input = RsyslogReceiver.Input(rawValue: transport.rawValue)!
        let address = SyslogAddress(transport: transport, host: host, port: receiver.ports[input]!)
        return SyslogSettings(
            address: address, message: SyslogMessage(syslogProtocol: syslogProtocol, hostname: "collector-1"),
            format: format, framing: framing, timeout: timeout,
            tls: tls ?? (transport == .tls ? SyslogTLS(caFile: receiver.directory.file("ca.pem")) : nil))
    }

    /// Sends three alerts; rsyslog's raw record of each is exactly the message sent.
    private func roundTrip(
        _ transport: SyslogAddress.Transport, framing: SyslogFraming = .octetCounting, format: SyslogBodyFormat = .json
    ) async throws {
        let receiver = try RsyslogReceiver()
        try await receiver.start()
        defer { receiver.stop() }
        let sink = SyslogSink(settings: Self.settings(receiver, transport, format: format, framing: framing))
        let records = (1...3).map { Self.record($0) }
        #expect(try await sink.send(records).isEmpty)
        await sink.shutdown()
        let input = RsyslogReceiver.Input(rawValue: transport.rawValue)!
        let received = await receiver.waitForMessages(input, count: 3)
        #expect(received == records.map { String(decoding: sink.message(for: $0), as: UTF8.self) }, "\(receiver.log)")
    }

    @Test func udp() async throws { try await roundTrip(.udp) }
    @Test func tcpWithOctetCounting() async throws { try await roundTrip(.tcp) }
    @Test func tcpWithLineEnds() async throws { try await roundTrip(.tcp, framing: .lf) }
    @Test func tls() async throws { try await roundTrip(.tls) }
    @Test func relp() async throws { try await roundTrip(.relp) }
    @Test func cefOverTLS() async throws { try await roundTrip(.tls, format: .cef) }

    // MARK: Read back by independent parsers

    /// Each line of `file` parsed by PyPI's syslog-rfc5424-parser and pycef.
    static func parsed(_ file: String) throws -> [[String: Any]] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", root + "/Tests/Clients/parse_syslog.py", file]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "parse_syslog.py failed (pip install pycef syslog-rfc5424-parser)")
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    @Test func rfc5424AndCEFAreReadBackFieldForField() async throws {
        let receiver = try RsyslogReceiver()
        try await receiver.start()
        defer { receiver.stop() }
        // pycef's header pattern takes no `=` and no `\\` in a header field (the CEF specification
        // allows `=` and escapes `|` and `\\` with a backslash), so titles here avoid both; the
        // escaping itself is checked in CEFMessageTests. The odd alert id checks RFC 5424's
        // parameter escaping (`"`, `]`, `\\`), which the parser splits on.
        var odd = Self.record(2, title: "Defense evasion: \\\"quoted\\\" [x] <b>", severity: "Medium")
        odd.alertID = #"da2 "q" [x] \z"#
        let records = [Self.record(1), odd, Self.record(3, title: "Ransomware \\u00e9v\\u00e9nement", severity: "Informational")]
        for format in [SyslogBodyFormat.json, .cef] {
            var settings = Self.settings(receiver, .tcp, format: format)
            settings.message.enterpriseNumber = 99999
            settings.message.facility = .local3
            let sink = SyslogSink(settings: settings)
            #expect(try await sink.send(records).isEmpty)
            await sink.shutdown()
        }
        #expect(await receiver.waitForMessages(.tcp, count: 6).count == 6)
        let lines = try Self.parsed(receiver.file(.tcp))
        try #require(lines.count == 6, "\(lines)")
        let severities = ["crit", "err", "notice"]
        for (index, line) in lines.enumerated() {
            let record = records[index % 3]
            let syslog = try #require(line["syslog"] as? [String: Any], "not RFC 5424: \(line)")
            #expect(syslog["facility"] as? String == "local3")
            #expect(syslog["severity"] as? String == severities[index % 3])
            #expect(syslog["hostname"] as? String == "collector-1")
            #expect(syslog["appname"] as? String == "defender-alertd")
            #expect(syslog["msgid"] as? String == "created")
            #expect(syslog["timestamp"] as? String == "2026-11-25T19:51:56.123456Z")
            let data = (syslog["sd"] as? [String: [String: String]])?["defender@99999"]
            #expect(
                data == [
                    "alertId": SyslogMessage.parameterValue(record.alertID), "tenant": "contoso",
                    "severity": ["High", "Medium", "Informational"][index % 3], "event": "created",
                    "kind": "alert",
                ])
            if index < 3 {
                #expect(syslog["msg"] as? String == record.payload)
            } else {
                let cef = try #require(line["cef"] as? [String: String], "pycef did not read \(line)")
                let title = try #require(try JSONSerialization.jsonObject(with: Data(record.payloadBytes)) as? [String: Any])["title"] as? String
                #expect(cef["DeviceVendor"] == "Microsoft")
                #expect(cef["DeviceProduct"] == "Defender for Endpoint")
                #expect(cef["DeviceEventClassID"] == "7f1c")
                #expect(cef["Name"] == title)
                #expect(cef["Severity"] == ["8", "5", "1"][index % 3])
                #expect(cef["externalId"] == "da\(index % 3 + 1)")
                #expect(cef["dvchost"] == "ws-\(index % 3 + 1).contoso.com")
                #expect(cef["duser"] == #"CONTOSO\\jdoe"#)
                #expect(cef["AlertId"] == CEFMessage.extensionValue(record.alertID))
                #expect(cef["IncidentId"] == "\((index % 3 + 1) * 10)")
                #expect(cef["Tenant"] == "contoso")
                #expect(cef["rt"] == "1795636316123")
                #expect(cef["act"] == "created")
            }
        }
    }

    // MARK: Limits

    @Test func aMessageOverTheDatagramLimitIsRefusedNotCut() async throws {
        let receiver = try RsyslogReceiver()
        try await receiver.start()
        defer { receiver.stop() }
        var settings = Self.settings(receiver, .udp)
        settings.maxMessageSize = 1_000_000
        let sink = SyslogSink(settings: settings)
        let rejected = try await sink.send([Self.record(1), Self.record(2, padding: 70_000), Self.record(3)])
        #expect(rejected.map(\.recordID) == [2])
        #expect(rejected.first?.reason.contains("the most a UDP datagram holds (65507 bytes)") == true)
        #expect(await receiver.waitForMessages(.udp, count: 2).map { $0.contains("\"id\":\"da2\"") } == [false, false])
    }

    @Test func aMessageOverMaxMessageSizeIsRefusedOnEveryTransport() async throws {
        let receiver = try RsyslogReceiver()
        try await receiver.start()
        defer { receiver.stop() }
        var settings = Self.settings(receiver, .relp)
        settings.maxMessageSize = 2048
        let sink = SyslogSink(settings: settings)
        let rejected = try await sink.send([Self.record(1, padding: 4000), Self.record(2)])
        #expect(rejected.map(\.recordID) == [1])
        #expect(rejected.first?.reason.contains("max_message_size (2048 bytes); it is not cut") == true)
        #expect(await receiver.waitForMessages(.relp, count: 1).count == 1)
        await sink.shutdown()
    }

    // MARK: Faults

    @Test func relpLosesNothingWhenTheReceiverIsKilledAndRestarted() async throws {
        let receiver = try RsyslogReceiver()
        try await receiver.start()
        let sink = SyslogSink(settings: Self.settings(receiver, .relp, timeout: .seconds(5)))
        #expect(try await sink.send((1...50).map { Self.record($0) }).isEmpty)
        await receiver.stop(kill: true)
        // Down: the batch is not confirmed.
        await #expect(throws: SinkError.self) { try await sink.send((51...100).map { Self.record($0) }) }
        try await receiver.start()
        #expect(try await sink.send((51...100).map { Self.record($0) }).isEmpty)
        await sink.shutdown()
        let ids = Set(await receiver.waitForMessages(.relp, count: 100).compactMap { $0.firstMatch(of: /alertId="(da\d+)"/)?.1 }.map(String.init))
        #expect(ids == Set((1...100).map { "da\($0)" }))
        await receiver.stop()
    }

    @Test func tcpReconnectsAfterTheReceiverRestarted() async throws {
        let receiver = try RsyslogReceiver()
        try await receiver.start()
        let sink = SyslogSink(settings: Self.settings(receiver, .tcp, timeout: .seconds(5)))
        #expect(try await sink.send([Self.record(1)]).isEmpty)
        #expect(await receiver.waitForMessages(.tcp, count: 1).count == 1)
        await receiver.stop()
        try await receiver.start()
        // The next batch goes on a new connection. Whether the old one's close was already seen
        // is a race with the event loop: if not, that attempt fails (not confirmed) and the
        // retry, as the sink worker makes it, goes through. No wait, no timing.
        var delivered = false
        for _ in 0..<2 where !delivered {
            delivered = (try? await sink.send([Self.record(2)]))?.isEmpty == true
        }
        #expect(delivered)
        #expect(await receiver.waitForMessages(.tcp, count: 2).contains { $0.contains(#"alertId="da2""#) })
        await sink.shutdown()
        await receiver.stop()
    }

    /// A TLS sink whose handshake must fail: nothing is delivered and the error says why.
    private func refused(
        _ tls: (RsyslogReceiver) -> SyslogTLS, host: String = "127.0.0.1",
        serverCertificate: (TestCertificateAuthority) throws -> (certificate: String, key: String)? = { _ in nil },
        expecting phrase: String
    ) async throws {
        let authority = try TestCertificateAuthority()
        let receiver = try RsyslogReceiver(serverCertificate: try serverCertificate(authority), authority: authority)
        try await receiver.start()
        defer { receiver.stop() }
        let sink = SyslogSink(settings: Self.settings(receiver, .tls, tls: tls(receiver), host: host, timeout: .seconds(5)))
        await #expect {
            try await sink.send([Self.record(1)])
        } throws: { error in
            let error = error as? SinkError
            #expect(error?.kind == .needsOperator, "\(String(describing: error))")
            #expect(error?.description.contains(phrase) == true, "\(String(describing: error))")
            return error != nil
        }
        #expect(receiver.received(.tls).isEmpty)
        await sink.shutdown()
    }

    @Test func tlsRefusesAReceiverSignedByAnotherCA() async throws {
        let other = try TestCertificateAuthority(commonName: "someone else")
        let path = TemporaryDirectory()
        let ca = path.write("other.pem", other.pem)
        try await refused({ _ in SyslogTLS(caFile: ca) }, expecting: "not trusted")
    }

    @Test func tlsRefusesACertificateForAnotherName() async throws {
        // NIOSSL accepts a certificate that names either server_name or the address connected
        // to, so this one names neither.
        try await refused(
            { SyslogTLS(caFile: $0.directory.file("ca.pem"), serverName: "siem.example") },
            serverCertificate: { try $0.serverCertificate(dnsNames: ["siem.other.example"], ipAddresses: []) },
            expecting: "does not match its name")
    }

    @Test func tlsRefusesAnExpiredCertificate() async throws {
        try await refused(
            { SyslogTLS(caFile: $0.directory.file("ca.pem")) }, serverCertificate: { try $0.serverCertificate(expired: true) },
            expecting: "not valid now")
    }

    @Test func tlsByHostNameChecksTheName() async throws {
        let receiver = try RsyslogReceiver()
        try await receiver.start()
        defer { receiver.stop() }
        // rsyslog listens on 127.0.0.1: "localhost" may resolve to ::1 first, which is tried too
        // (the receiver holds its port on ::1, where the connection is refused at once).
        let sink = SyslogSink(settings: Self.settings(receiver, .tls, host: "localhost"))
        #expect(try await sink.send([Self.record(1)]).isEmpty)
        #expect(await receiver.waitForMessages(.tls, count: 1).count == 1)
        await sink.shutdown()
    }

    @Test func aClientCertificateWhenTheReceiverRequiresOne() async throws {
        let authority = try TestCertificateAuthority()
        let receiver = try RsyslogReceiver(authority: authority, requireClientCertificate: true)
        try await receiver.start()
        defer { receiver.stop() }
        let client = try authority.serverCertificate(dnsNames: ["collector-1.example"], ipAddresses: [])
        let certificate = receiver.directory.write("client.pem", client.certificate, mode: 0o644)
        let ca = receiver.directory.file("ca.pem")
        let withCertificate = SyslogSink(
            settings: Self.settings(
                receiver, .tls,
                tls: SyslogTLS(
                    caFile: ca, clientCertificateFile: certificate, clientKey: Secret(client.key))))
        #expect(try await withCertificate.send([Self.record(1)]).isEmpty)
        #expect(await receiver.waitForMessages(.tls, count: 1).count == 1)
        await withCertificate.shutdown()
        // Without one the receiver ends the handshake: nothing is confirmed.
        let without = SyslogSink(settings: Self.settings(receiver, .tls, tls: SyslogTLS(caFile: ca), timeout: .seconds(5)))
        await #expect(throws: SinkError.self) {
            _ = try await without.send([Self.record(2)])
            // TLS 1.3: the client may finish its side first and learn of the refusal with the next write.
            try await Task.sleep(for: .milliseconds(300))
            _ = try await without.send([Self.record(3)])
        }
        await without.shutdown()
        #expect(receiver.received(.tls).count == 1)
    }
}
