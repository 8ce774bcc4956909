import Foundation
import TestSupport
import Testing

/// The daemon process delivering to a real rsyslog over every transport.
@Suite(
    "Syslog sinks end to end",
    .enabled(if: RsyslogReceiver.isInstalled, "needs rsyslogd with imrelp and GnuTLS: Debian's rsyslog, rsyslog-relp, rsyslog-gnutls"))
struct SyslogPipelineTests {
    static func syslogSink(_ name: String, _ receiver: RsyslogReceiver, _ input: RsyslogReceiver.Input, _ extra: String = "") -> String {
        var text = """
            [[sink]]
            name = "\(name)"
            type = "syslog"
            address = "\(input.rawValue)://127.0.0.1:\(receiver.ports[input]!)"
            timeout = "5s"
            \(extra)

            """
        if input == .tls { text += "ca_file = \"\(receiver.directory.file("ca.pem"))\"\n\n" }
        return text
    }

    /// The alert ids in what `input` received (RFC 5424 structured data).
    static func ids(_ receiver: RsyslogReceiver, _ input: RsyslogReceiver.Input) -> [String] {
        receiver.received(input).compactMap { $0.firstMatch(of: /alertId="([^"]+)"/).map { String($0.1) } }
    }

    @Test func everyTransportDeliversAndRELPLosesNothingWhenTheReceiverIsKilled() throws {
        let receiver = try RsyslogReceiver()
        try receiver.start()
        let harness = try PipelineHarness()
        harness.configure(
            sinks: PipelineHarness.fileSink("a")
                + Self.syslogSink("relp", receiver, .relp)
                + Self.syslogSink("tcp", receiver, .tcp, "framing = \"lf\"")
                + Self.syslogSink("tls", receiver, .tls, "format = \"cef\"")
                + Self.syslogSink("udp", receiver, .udp, "protocol = \"rfc3164\""))
        try harness.control("POST", "alerts", #"{"count": 200}"#)
        try harness.startDaemon()
        harness.waitUntil("the first alerts over RELP") { Self.ids(receiver, .relp).count >= 200 }
        harness.waitUntil("the first alerts over TCP") { Self.ids(receiver, .tcp).count >= 200 }
        harness.waitUntil("the first alerts over TLS") { receiver.received(.tls).count >= 200 }
        // UDP is best effort: a burst can overflow the receiver's socket buffer.
        harness.waitUntil("alerts over UDP") { !receiver.received(.udp).isEmpty }

        // Mid-stream: alerts keep arriving while rsyslog is killed and, later, restarted.
        for round in 0..<10 {
            try harness.control("POST", "alerts", #"{"count": 100}"#)
            if round == 3 { receiver.stop(kill: true) }
            if round == 7 { try receiver.start() }
            Thread.sleep(forTimeInterval: 0.3)  // pacing the simulated load; no result depends on it
        }
        let all = Set(try harness.simulatorAlerts().map(\.id))
        #expect(all.count == 1200)
        harness.waitUntil("every alert in the file sink") { harness.delivered("a").count == 1200 }
        harness.waitUntil("every alert over RELP", timeout: .seconds(120)) { Set(Self.ids(receiver, .relp)) == all }
        let relp = Self.ids(receiver, .relp)
        // A resent batch may repeat what the receiver had acknowledged before it died, never more.
        #expect(relp.count - all.count <= 500, "\(relp.count - all.count) duplicates")
        harness.stopDaemon()

        // TCP and TLS carried the first 200 before rsyslog was killed (best effort and "written
        // on an open connection" cannot cover a receiver killed mid-stream); UDP what it could.
        #expect(Set(Self.ids(receiver, .tcp)).count >= 200)
        let cef = receiver.received(.tls)
        #expect(cef.count >= 200 && cef.allSatisfy { $0.contains("CEF:0|Microsoft|Defender for Endpoint|") })
        let bsd = receiver.received(.udp)
        #expect(
            !bsd.isEmpty && bsd.allSatisfy { $0.wholeMatch(of: /<13[0-6]>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ defender-alertd: \{.*\}/) != nil },
            "\(bsd.prefix(2))")
        receiver.stop()
        let log = harness.daemon?.stderr ?? ""
        #expect(!log.contains(ConfigFixture.canary))
    }

    @Test func anAlertTooLargeForTheReceiverIsADeadLetterAndCanBeSentAgain() throws {
        let receiver = try RsyslogReceiver()
        try receiver.start()
        defer { receiver.stop() }
        let harness = try PipelineHarness()
        let sinks = PipelineHarness.fileSink("a") + Self.syslogSink("siem", receiver, .tcp, "max_message_size = \"4KiB\"")
        harness.configure(sinks: sinks)
        let now = ISO8601DateFormatter().string(from: Date())
        let poison =
            #"{"alerts": [{"id": "da-poison", "severity": "High", "title": "huge", "lastUpdateTime": "\#(now)", "description": "\#(String(repeating: "x", count: 10_000))"}]}"#
        try harness.control("POST", "alerts", #"{"count": 3}"#)
        try harness.control("POST", "alerts", poison)
        let daemon = try harness.startDaemon()
        harness.waitUntil("3 alerts at rsyslog") { Self.ids(receiver, .tcp).count == 3 }
        harness.waitUntil("the dead letter logged") { daemon.stderr.contains("dead letter") }
        #expect(!Self.ids(receiver, .tcp).contains("da-poison"))
        #expect(daemon.stderr.contains("da-poison") && daemon.stderr.contains("over max_message_size (4096 bytes)"))
        let status = harness.socket.receive(until: { $0.contains("sink siem 1 dead letters") }, timeout: .seconds(30))
        #expect(status.matched != nil, "\(status.all.suffix(3))")

        let config = harness.fixture.directory.file("defender-alertd.toml")
        let listed = try DaemonProcess.run(["state", "dead-letters", "--config", config])
        #expect(listed.status == 0)
        #expect(listed.stdout.contains("sink siem tenant contoso alert da-poison (created)"), "\(listed.stdout)")
        #expect(listed.stdout.contains("1 dead letters (all sinks)"))

        // The receiver's limit is raised: re-queued while the daemon runs, it goes through.
        harness.stopDaemon()
        harness.configure(sinks: PipelineHarness.fileSink("a") + Self.syslogSink("siem", receiver, .tcp, "max_message_size = \"64KiB\""))
        let requeued = try DaemonProcess.run(["state", "dead-letters", "--config", config, "--sink", "siem", "--requeue"])
        #expect(requeued.stdout.contains("1 dead letters of sink siem marked to be sent again"), "\(requeued.stdout)\(requeued.stderr)")
        try harness.startDaemon()
        harness.waitUntil("the re-queued alert at rsyslog") { Self.ids(receiver, .tcp).contains("da-poison") }
        harness.stopDaemon()
        let after = try DaemonProcess.run(["state", "dead-letters", "--config", config])
        #expect(after.stdout.contains("0 dead letters"), "\(after.stdout)")
        let purged = try DaemonProcess.run(["state", "dead-letters", "--config", config, "--purge"])
        #expect(purged.stdout.contains("0 dead letters of all sinks deleted"))
        #expect(Self.ids(receiver, .tcp).filter { $0 == "da-poison" }.count == 1)
    }

    /// Plain syslog to another host loads, with a warning from check-config and the daemon
    /// (issue 23, item 11), as plain http:// to another host is refused.
    @Test func plainSyslogToAnotherHostIsWarnedAbout() throws {
        let harness = try PipelineHarness()
        harness.configure(
            sinks: """
                [[sink]]
                name = "siem"
                type = "syslog"
                address = "udp://192.0.2.10:514"

                [[sink]]
                name = "local"
                type = "syslog"
                address = "tcp://127.0.0.1:514"
                """)
        let config = harness.fixture.directory.file("defender-alertd.toml")
        let result = try DaemonProcess.run(["check-config", "--config", config])
        #expect(result.status == 0, "\(result.stderr)")
        let warnings = result.stderr.split(separator: "\n").filter { $0.contains(": warning: ") }
        #expect(warnings.count == 1, "\(result.stderr)")
        #expect(warnings.first?.contains("sink siem: udp://192.0.2.10:514 is not this machine") == true, "\(result.stderr)")
    }

    @Test func checkConfigNamesTheBadSyslogKeys() throws {
        let harness = try PipelineHarness()
        harness.configure(
            sinks: """
                [[sink]]
                name = "siem"
                type = "syslog"
                address = "tcp//siem.example"

                [[sink]]
                name = "secure"
                type = "syslog"
                address = "tls://siem.example"
                ca_file = "missing-ca.pem"
                client_key_file = "k.pem"
                """)
        let config = harness.fixture.directory.file("defender-alertd.toml")
        let result = try DaemonProcess.run(["check-config", "--config", config])
        #expect(result.status == 78)
        let lines = result.stderr.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("\(config):") && $0.contains("sink.address") })
        #expect(lines.contains { $0.contains("sink.ca_file") && $0.contains("missing-ca.pem does not exist") })
        #expect(lines.contains { $0.contains("sink.client_key_file") && $0.contains("needs client_certificate_file") })
    }

    @Test func aReceiverSignedByAnotherCAIsRefusedUntilTheConfigurationIsFixed() throws {
        let receiver = try RsyslogReceiver()
        try receiver.start()
        defer { receiver.stop() }
        let harness = try PipelineHarness()
        let other = try TestCertificateAuthority(commonName: "someone else")
        let wrongCA = harness.fixture.directory.write("wrong-ca.pem", other.pem, mode: 0o644)
        let tls = """
            [[sink]]
            name = "siem"
            type = "syslog"
            address = "tls://127.0.0.1:\(receiver.ports[.tls]!)"
            timeout = "5s"

            """
        harness.configure(sinks: PipelineHarness.fileSink("a") + tls + "ca_file = \"\(wrongCA)\"\n")
        try harness.control("POST", "alerts", #"{"count": 5}"#)
        let daemon = try harness.startDaemon()
        harness.waitUntil("the refusal logged") { daemon.stderr.contains("not trusted") }
        #expect(daemon.stderr.contains("it needs a fix"))
        let status = harness.socket.receive(until: { $0.contains("sink siem FAILING") }, timeout: .seconds(30))
        #expect(status.matched != nil, "\(status.all.suffix(3))")
        #expect(receiver.received(.tls).isEmpty)
        // The right CA, applied by a reload: the queued alerts go out.
        harness.configure(sinks: PipelineHarness.fileSink("a") + tls + "ca_file = \"\(receiver.directory.file("ca.pem"))\"\n")
        daemon.signal(SIGHUP)
        harness.waitUntil("5 alerts at rsyslog over TLS") { Self.ids(receiver, .tls).count == 5 }
        harness.stopDaemon()
    }
}
