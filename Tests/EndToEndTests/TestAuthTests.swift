import Foundation
import TestSupport
import Testing

/// `defender-alertd test-auth` against `defender-sim`, both as real processes.
@Suite("test-auth")
struct TestAuthTests {
    let fixture = ConfigFixture()

    func config(base: String, extra: String = "") -> String {
        fixture.writeConfiguration(ConfigFixture.tenant + "\napi_url = \"\(base)\"\nlogin_url = \"\(base)\"\n" + extra + "\n" + ConfigFixture.sink)
    }

    func simulator(_ arguments: [String] = []) throws -> (DaemonProcess, String) {
        let simulator = try DaemonProcess(["--port", "0", "--client-secret", ConfigFixture.canary] + arguments, executable: "defender-sim")
        let base = try #require(simulator.waitForLine(startingWith: "listening "), "\(simulator.stderr)")
        return (simulator, base)
    }

    @Test func aWorkingTenantPassesEveryStep() throws {
        let (simulator, base) = try simulator(["--backlog", "3"])
        let result = try DaemonProcess.run(["test-auth", "--config", config(base: base)])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("[ok] token"))
        #expect(result.stdout.contains("[ok] permissions: application roles: Alert.Read.All"))
        #expect(result.stdout.contains("[ok] alerts API"))
        #expect(!(result.stdout + result.stderr).contains(ConfigFixture.canary))
        #expect(!result.stdout.contains("eyJ"))  // no token either
        simulator.signal(SIGTERM)
        _ = simulator.waitForExit(timeout: .seconds(30))
    }

    @Test func missingConsentIsNamedWithItsFix() throws {
        let (simulator, base) = try simulator(["--roles", ""])
        let result = try DaemonProcess.run(["test-auth", "--config", config(base: base)])
        #expect(result.status == 1)
        #expect(result.stdout.contains("[FAIL] permissions: application roles in the token: none"))
        #expect(result.stdout.contains("Grant admin consent"))
        simulator.signal(SIGTERM)
        _ = simulator.waitForExit(timeout: .seconds(30))
    }

    @Test func wrongSecretWrongTenantAndUnreachableHost() throws {
        let (simulator, base) = try simulator()
        fixture.directory.write("secret", "the-secret-id-not-its-value\n")
        var result = try DaemonProcess.run(["test-auth", "--config", config(base: base)])
        #expect(result.status == 1)
        #expect(result.stdout.contains("AADSTS7000215"))
        #expect(result.stdout.contains("ID (a GUID) was pasted"))

        fixture.directory.write("secret", ConfigFixture.canary + "\n")
        let wrongTenant = fixture.writeConfiguration(
            ConfigFixture.tenant.replacingOccurrences(of: "4F8E2C1A-7B3D-4E59-9A6C-2D1F0E8B7C35", with: "fabrikam.onmicrosoft.com")
                + "\napi_url = \"\(base)\"\nlogin_url = \"\(base)\"\n" + ConfigFixture.sink)
        result = try DaemonProcess.run(["test-auth", "--config", wrongTenant])
        #expect(result.status == 1)
        #expect(result.stdout.contains("AADSTS90002"))
        #expect(result.stdout.contains("cloud"))
        simulator.signal(SIGTERM)
        _ = simulator.waitForExit(timeout: .seconds(30))

        // Nothing listens (port 9, discard, is closed here; the simulator's freed port may be
        // taken at once by another test's server while tests run side by side).
        result = try DaemonProcess.run(["test-auth", "--config", config(base: "http://127.0.0.1:9")])
        #expect(result.status == 1)
        #expect(result.stdout.contains("[FAIL] token"))
        #expect(result.stdout.contains("proxy_url"))
        #expect(!(result.stdout + result.stderr).contains(ConfigFixture.canary))
    }

    @Test func unknownTenantNameIsAConfigurationError() throws {
        let result = try DaemonProcess.run(["test-auth", "--config", config(base: "http://127.0.0.1:9"), "--tenant", "nope"])
        #expect(result.status == 78)
        #expect(result.stderr.contains("no [[tenant]] named \"nope\""))
    }
}
