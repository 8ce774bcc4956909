import Logging
import Systemd
import Testing

@Suite("Journal field names from metadata keys")
struct JournalFieldNameTests {
    @Test(arguments: [
        ("tenant", "DEFENDER_TENANT"),
        ("alert-id", "DEFENDER_ALERT_ID"),
        ("sink.name", "DEFENDER_SINK_NAME"),
        ("_trusted", "DEFENDER_TRUSTED"),
        ("__x", "DEFENDER_X"),
        ("message_id", "MESSAGE_ID"),
        ("ERRNO", "ERRNO"),
        ("DEFENDER_ALERT_ID", "DEFENDER_ALERT_ID"),
        ("défaut", "DEFENDER_D_FAUT"),
        ("", "DEFENDER_FIELD"),
        ("9lives", "DEFENDER_9LIVES"),
    ])
    func sanitized(key: String, expected: String) {
        #expect(JournalFieldName.forMetadataKey(key) == expected)
    }

    @Test func neverLongerThan64() {
        let name = JournalFieldName.forMetadataKey(String(repeating: "a", count: 200))
        #expect(name.count == 64)
        #expect(name.allSatisfy { $0.isUppercase || $0.isNumber || $0 == "_" })
    }

    @Test func prioritiesFollowSyslog() {
        #expect(JournalLogHandler.priority(for: .critical) == 2)
        #expect(JournalLogHandler.priority(for: .error) == 3)
        #expect(JournalLogHandler.priority(for: .warning) == 4)
        #expect(JournalLogHandler.priority(for: .notice) == 5)
        #expect(JournalLogHandler.priority(for: .info) == 6)
        #expect(JournalLogHandler.priority(for: .debug) == 7)
        #expect(JournalLogHandler.priority(for: .trace) == 7)
    }
}
