import DefenderAPI
import Foundation
import OrderedJSON
import Testing

@Suite("Printable text and the device code prompt")
struct PrintableTextTests {
    @Test func controlsSeparatorsAndBidiAreEscapedVisibly() {
        let hostile =
            "a\u{1B}]8;;https://evil.example\u{07}link\u{1B}]8;;\u{07}\u{0}\u{7F}\u{85}\u{9B}\u{2028}\u{2029}\u{202E}\u{2066}\u{200F}\r\nb\tc"
        let shown = PrintableText.shown(hostile)
        #expect(
            shown
                == #"a\u001b]8;;https://evil.example\u0007link\u001b]8;;\u0007\u0000\u007f\u0085\u009b\u2028\u2029\u202e\u2066\u200f\u000d\u000ab\u0009c"#
        )
        #expect(!shown.unicodeScalars.contains { PrintableText.isUnsafe($0) })
    }

    @Test func ordinaryTextIsKeptAndABackslashCannotForgeAnEscape() {
        #expect(PrintableText.shown("Ana Lyst <ana@contoso.com> ünïcødé ✓ 😀") == "Ana Lyst <ana@contoso.com> ünïcødé ✓ 😀")
        #expect(PrintableText.shown(#"x\u{1B}"#) == #"x\\u{1B}"#)
        #expect(PrintableText.isPrintable("To sign in, open https://microsoft.com/devicelogin"))
        #expect(!PrintableText.isPrintable("a\u{1B}[2J"))
    }

    @Test func lengthIsBounded() {
        let long = String(repeating: "x", count: 2_000_000)
        let shown = PrintableText.shown(long, limit: 1_000)
        #expect(shown.unicodeScalars.count == 1_001 && shown.hasSuffix("…"))
        // An escape is never cut in the middle.
        let escapes = PrintableText.shown(String(repeating: "\u{1B}", count: 500), limit: 20)
        #expect(escapes == #"\u001b\u001b\u001b"# + "…")
        #expect(PrintableText.shown("exactly", limit: 7) == "exactly")
    }

    @Test func microsoftsDeviceLoginPagesAreKnownOthersAreNot() {
        let login = "https://login.microsoftonline.com"
        for uri in [
            "https://microsoft.com/devicelogin", "https://www.microsoft.com/devicelogin/", "https://login.microsoft.com/device",
            "https://microsoft.com/deviceloginus", "https://MICROSOFT.com/DeviceLogin", "https://login.microsoftonline.com/common/oauth2/deviceauth",
        ] {
            #expect(DeviceCodeLogin.isMicrosoftVerificationURI(uri, loginBase: login), "\(uri)")
        }
        for uri in [
            "https://microsoft.com.evil.example/devicelogin", "https://microsoft.com@evil.example/devicelogin", "http://microsoft.com/devicelogin",
            "https://microsoft.com:8443/devicelogin", "https://microsoft.com/devicelogin-phish", "https://evil.example/devicelogin",
            "https://xn--microsft-1za.com/devicelogin", "javascript:alert(1)", "", "https://login.microsoftonline.us/x",
        ] {
            #expect(!DeviceCodeLogin.isMicrosoftVerificationURI(uri, loginBase: login), "\(uri)")
        }
        // The configured login_url (the simulator on loopback) is trusted, its scheme and port only.
        #expect(DeviceCodeLogin.isMicrosoftVerificationURI("http://127.0.0.1:8080/device", loginBase: "http://127.0.0.1:8080"))
        #expect(!DeviceCodeLogin.isMicrosoftVerificationURI("http://127.0.0.1:9090/device", loginBase: "http://127.0.0.1:8080"))
    }

    static func prompt(message: String, uri: String = "https://microsoft.com/devicelogin", code: String = "F7KQ2MDXA") -> DeviceCodeLogin.Prompt {
        // Built the way `login` builds it, through the public check.
        DeviceCodeLogin.Prompt(
            userCode: code, verificationURI: uri, message: message, expiresIn: .seconds(900),
            verificationURIIsMicrosofts: DeviceCodeLogin.isMicrosoftVerificationURI(uri, loginBase: "https://login.microsoftonline.com"))
    }

    @Test func entrasOwnInstructionIsShownAsItIs() {
        let message = "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code F7KQ2MDXA to authenticate."
        #expect(Self.prompt(message: message).instructions == message + "\n")
    }

    @Test func aHostileInstructionIsEscapedBoundedAndTheCodeRestated() {
        let message =
            "To sign in, open \u{1B}]8;;https://evil.example/\u{07}https://microsoft.com/devicelogin\u{1B}]8;;\u{07} and enter F7KQ2MDXA"
            + String(repeating: "\u{1B}[2J padding", count: 200_000)
        let text = Self.prompt(message: message).instructions
        #expect(!text.unicodeScalars.contains("\u{1B}") && !text.unicodeScalars.contains("\u{07}"))
        #expect(text.count < 1_200, "\(text.count)")
        #expect(text.hasSuffix("Sign-in page: https://microsoft.com/devicelogin  Code: F7KQ2MDXA\n"), "\(text.suffix(100))")
        #expect(!text.contains("Warning"))
    }

    @Test func aForeignPageIsWarnedAbout() {
        let uri = "https://microsoft-devicelogin.evil.example/login"
        let text = Self.prompt(
            message: "To sign in, use a web browser to open the page \(uri) and enter the code F7KQ2MDXA to authenticate.", uri: uri
        ).instructions
        let lines = text.split(separator: "\n")
        #expect(lines.first?.hasPrefix("Warning: the sign-in page in this answer, \(uri), is not Microsoft's") == true, "\(text)")
        #expect(lines.count == 2)
        // A page with a line break in it cannot start a line of its own.
        let forged = Self.prompt(message: "x", uri: "https://evil.example/\nSigned in as admin", code: "C\r\nODE").instructions
        #expect(!forged.contains("\nSigned in as") && forged.contains(#"\u000aSigned in as admin"#))
        #expect(forged.contains(#"C\u000d\u000aODE"#))
    }
}

@Suite("A failure logged at most hourly")
struct PersistentFailureLogTests {
    @Test func writtenWhenItStartsThenHourlyThenOnceWhenItEnds() {
        var log = PersistentFailureLog()
        var now = Duration.zero
        #expect(!log.isFailing)
        #expect(log.failed(at: now) == .write(suppressed: 0))
        // A poll a second for 20 s, then for the rest of the hour: nothing more written.
        for _ in 0..<20 {
            now += .seconds(1)
            #expect(log.failed(at: now) == .suppress)
        }
        now = .seconds(3599)
        #expect(log.failed(at: now) == .suppress)
        now = .seconds(3600)
        #expect(log.failed(at: now) == .write(suppressed: 21))
        now += .seconds(1)
        #expect(log.failed(at: now) == .suppress)
        #expect(log.isFailing)
        let first = log.ended()
        let second = log.ended()
        #expect(first)
        #expect(!second, "said once")
        // Starting again is written at once.
        #expect(log.failed(at: now + .seconds(1)) == .write(suppressed: 0))
    }
}
