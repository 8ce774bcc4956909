import DefenderAPI
import Foundation
import Testing

@Suite("Secret never shows its value")
struct SecretTests {
    let canary = "CANARY-7f3a9c-secret-value"

    @Test func descriptionsAreRedacted() {
        let secret = Secret(canary)
        #expect("\(secret)" == "<redacted>")
        #expect(String(describing: secret) == "<redacted>")
        #expect(String(reflecting: secret) == "<redacted>")
        var dumped = ""
        dump(secret, to: &dumped)
        #expect(!dumped.contains(canary))
        #expect(Mirror(reflecting: secret).children.isEmpty)
    }

    @Test func redactedInsideContainers() {
        struct Holder { var name = "x"; var secret: Secret }
        let holder = Holder(secret: Secret(canary))
        var dumped = ""
        dump(holder, to: &dumped)
        #expect(!dumped.contains(canary))
        #expect(!String(describing: holder).contains(canary))
        #expect(!String(describing: [holder]).contains(canary))
        #expect(!String(describing: Optional(Secret(canary))).contains(canary))
    }

    @Test func valueIsReachableDeliberately() {
        #expect(Secret(canary).withValue { $0 } == canary)
        #expect(Secret("").isEmpty)
    }
}
