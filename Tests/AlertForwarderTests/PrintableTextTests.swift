import Foundation
import OrderedJSON
import TestSupport
import Testing

@testable import AlertForwarder

/// Characters that act instead of showing never reach a terminal or a parser raw: the one
/// escaping function, and each format that uses it (syslog, CEF, `summary`).
@Suite("Printable text")
struct PrintableTextTests {
    /// Each unsafe kind, with how it is written: NUL, ESC, VT, DEL, NEL, the one-character CSI
    /// (C1), the line and paragraph separators, a bidirectional override and isolates.
    static let unsafe: [(Unicode.Scalar, String)] = [
        ("\u{00}", #"\u0000"#), ("\u{1B}", #"\u001b"#), ("\u{0B}", #"\u000b"#), ("\u{7F}", #"\u007f"#), ("\u{85}", #"\u0085"#),
        ("\u{9B}", #"\u009b"#), ("\u{2028}", #"\u2028"#), ("\u{2029}", #"\u2029"#), ("\u{202E}", #"\u202e"#), ("\u{2066}", #"\u2066"#),
        ("\u{2069}", #"\u2069"#),
    ]
    /// All of them in one title, between visible letters.
    static let nasty = unsafe.map { "x" + String(Character($0.0)) }.joined() + "[31m red"

    static func hasNoUnsafe(_ text: String, keeping: Set<Unicode.Scalar> = []) -> Bool {
        !text.unicodeScalars.contains { PrintableText.isUnsafe($0) && !keeping.contains($0) }
    }

    /// An alert whose title, device and description hold every unsafe character, written as
    /// Defender may write it (JSON escapes C0 and leaves DEL, C1, U+2028 and bidi raw).
    static func record(alertID: String = "da1") -> OutboxRecord {
        let payload = JSONValue.object([
            ("id", .string(alertID)), ("severity", .string("High")), ("title", .string(nasty)), ("status", .string("New")),
            ("lastUpdateTime", .string("2026-11-25T19:51:56Z")), ("computerDnsName", .string("ws\u{85}1")), ("description", .string(nasty)),
            ("detectorId", .string("7f1c\u{202E}")),
        ]).serialized
        return OutboxRecord(
            id: 1, sink: "siem", tenant: "contoso", alertID: alertID, event: "created", receivedAt: "2026-11-25T19:52:03Z", payload: payload)
    }

    @Test func eachUnsafeCharacterIsWrittenAsAUnicodeEscape() {
        for (scalar, escape) in Self.unsafe {
            #expect(PrintableText.isUnsafe(scalar))
            #expect(PrintableText.escaped("a\(Character(scalar))b") == "a\(escape)b")
        }
        for safe in ["plain", "é ü 日本 😀", #"a\b "q""#, "\u{200D}", "\u{A0}"] {
            #expect(PrintableText.escaped(safe) == safe)
        }
        // What a format needs stays as it is.
        #expect(PrintableText.escaped("a\nb\u{1B}", keeping: ["\n"]) == #"a"# + "\n" + #"b\u001b"#)
    }

    @Test func jsonKeepsItsValueAndItsWhitespace() throws {
        let json = "{\n\t\"title\": " + JSONValue.string(Self.nasty).serialized + ",\r\n\"n\":1}"
        let escaped = PrintableText.escapedJSON(Array(json.utf8))
        let text = String(decoding: escaped, as: UTF8.self)
        #expect(Self.hasNoUnsafe(text, keeping: ["\n", "\r", "\t"]), "\(text)")
        #expect(try JSONValue(parsing: text) == JSONValue(parsing: json))
        #expect(text.hasPrefix("{\n\t\"title\": ") && text.contains(#"x\u0085x\u009bx\u2028x\u2029x\u202ex\u2066x\u2069"#))
        // Nothing to escape: the same bytes.
        let plain = Array(#"{"title":"é \u001b 日本"}"#.utf8)
        #expect(PrintableText.escapedJSON(plain) == plain)
        // A truncated sequence at the end is left alone, never read past.
        #expect(PrintableText.escapedJSON([0x22, 0xE2, 0x80]) == [0x22, 0xE2, 0x80])
    }

    @Test func summaryLinesEscapeEveryUnsafeCharacter() {
        let line = RecordLine(format: .summary).line(for: Self.record())
        #expect(Self.hasNoUnsafe(line), "\(line)")
        let title = JSONValue.string(Self.nasty).serialized
        #expect(line.contains(PrintableText.escaped(title)))
        for (_, escape) in Self.unsafe { #expect(line.contains(escape), "\(escape) in \(line)") }
        // A device name with NEL is quoted (it would shift the columns) and escaped.
        #expect(line.contains(#" "ws\u00851" da1"#), "\(line)")
    }

    @Test func syslogMessagesEscapeStructuredDataAndMSG() throws {
        for syslogProtocol in [SyslogProtocol.rfc5424, .rfc3164] {
            let settings = SyslogSettings(
                address: SyslogAddress(transport: .tcp, host: "127.0.0.1", port: 601),
                message: SyslogMessage(syslogProtocol: syslogProtocol, hostname: "collector-1"))
            let record = Self.record(alertID: "da1\u{1B}]\u{2028}")
            let message = String(decoding: SyslogSink(settings: settings).message(for: record), as: UTF8.self)
            #expect(Self.hasNoUnsafe(message), "\(message)")
            if syslogProtocol == .rfc5424 {
                #expect(message.contains(#"alertId="da1\u001b\]\u2028""#), "\(message)")
            }
            // MSG is the same JSON value, its unsafe characters escaped inside its strings.
            let body = try #require(message.firstIndex(of: "{"))
            #expect(try JSONValue(parsing: String(message[body...])) == JSONValue(parsing: record.payload))
        }
    }

    @Test func cefHeaderAndExtensionsEscapeEveryUnsafeCharacter() throws {
        for includeJSON in [false, true] {
            let line = CEFMessage.line(for: Self.record(), includeJSON: includeJSON)
            #expect(Self.hasNoUnsafe(line), "\(line)")
            let fields = line.split(separator: "|", omittingEmptySubsequences: false)
            // The signature and the title (header fields), and msg (an extension).
            #expect(fields[4] == #"7f1c\u202e"#)
            #expect(fields[5] == Self.unsafe.map { "x" + $0.1 }.joined() + "[31m red")
            #expect(line.contains("msg=" + Self.unsafe.map { "x" + $0.1 }.joined() + "[31m red "), "\(line)")
            #expect(line.contains(#"dvchost=ws\u00851 "#))
        }
    }

    @Test func plainSyslogToAnotherHostIsWarnedAbout() throws {
        func warning(_ address: String) throws -> String? {
            let parsed = try SyslogAddress.parse(address).get()
            return SyslogSettings(address: parsed, message: SyslogMessage(hostname: "h")).plaintextWarning
        }
        for address in ["tcp://siem.example.com", "udp://192.0.2.10:514", "relp://[2001:db8::1]", "tcp://127.0.0.1.nip.io"] {
            let text = try warning(address)
            #expect(text?.contains("clear text") == true, "\(address)")
            #expect(text?.contains("use tls://") == true, "\(address)")
        }
        for address in ["tcp://127.0.0.1", "udp://127.0.0.53:514", "relp://[::1]:2514", "tls://siem.example.com"] {
            #expect(try warning(address) == nil, "\(address)")
        }
        let fixture = ConfigFixture()
        let configuration = try fixture.load(ConfigFixture.sink("syslog", named: "siem", "address = \"tcp://siem.example.com:514\"\n"))
        #expect(configuration.warnings.count == 1)
        #expect(
            configuration.warnings.first?.hasPrefix("sink siem: tcp://siem.example.com:514 is not this machine") == true, "\(configuration.warnings)")
        let local = try fixture.load(ConfigFixture.sink("syslog", named: "siem", "address = \"udp://127.0.0.1:514\"\n"))
        #expect(local.warnings.isEmpty)
    }
}
