import Foundation
import TestSupport
import Testing

/// `defender-sim` as a real process, and real clients nobody here wrote talking to it.
@Suite("defender-sim with real clients")
struct SimulatorProcessTests {
    static let tenant = "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35"
    static let client = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
    let directory = TemporaryDirectory()

    /// Starts the simulator and returns it with its base URL.
    func startSimulator(_ arguments: [String]) throws -> (DaemonProcess, String) {
        let simulator = try DaemonProcess(["--port", "0"] + arguments, executable: "defender-sim")
        let base = try #require(simulator.waitForLine(startingWith: "listening "), "no port: \(simulator.stderr)")
        return (simulator, base)
    }

    /// Runs a script from Tests/Clients with python3. The CA-bundle variables some machines set
    /// are removed: `requests` lets them override a session's own `verify`.
    func python(_ script: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        var environment = ProcessInfo.processInfo.environment
        for name in ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] { environment[name] = nil }
        return try runToCompletion("/usr/bin/env", ["python3", repositoryRoot + "/Tests/Clients/" + script] + arguments, environment: environment)
    }

    @Test func msalGetsATokenOverHTTPSWithTheSimulatorsCA() throws {
        let ca = directory.file("ca.pem")
        let (simulator, base) = try startSimulator(["--tls", "--ca-out", ca, "--client-secret", "msal-secret"])
        #expect(base.hasPrefix("https://127.0.0.1:"))

        let result = try python("msal_client.py", [base, Self.tenant, Self.client, "msal-secret", ca])
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let claims = summary?["claims"] as? [String: Any]
        #expect(claims?["aud"] as? String == "https://api.securitycenter.microsoft.com")
        #expect(claims?["roles"] as? [String] == ["Alert.Read.All"])

        // The wrong secret is refused with the documented error.
        let refused = try python("msal_client.py", [base, Self.tenant, Self.client, "wrong", ca])
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("AADSTS7000215"))
        simulator.signal(SIGTERM)
        #expect(simulator.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test func documentedRequestsSampleListsAlertsWithFilterTopAndSkip() throws {
        let ca = directory.file("ca.pem")
        let (simulator, base) = try startSimulator(["--tls", "--ca-out", ca, "--client-secret", "sample-secret", "--backlog", "23"])
        let result = try python("requests_client.py", [base, Self.tenant, Self.client, "sample-secret", ca, "2000-01-01T00:00:00Z"])
        #expect(result.status == 0, "\(result.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(summary?["alerts"] as? Int == 23)
        #expect(summary?["unique"] as? Int == 23)
        #expect(summary?["pages"] as? Int == 5)
        #expect(summary?["encoding"] as? String == "gzip")  // requests asks for gzip, deflate
        #expect(summary?["odata_version"] as? String == "4.0")
        simulator.signal(SIGTERM)
        #expect(simulator.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test func msalSignsAUserInWithTheDeviceCodeFlowAndRedeemsTheRefreshToken() throws {
        let ca = directory.file("ca.pem")
        let (simulator, base) = try startSimulator(["--tls", "--ca-out", ca, "--client-secret", "unused-secret", "--backlog", "0"])
        let publicClient = "0a6e9f2c-51d4-4c7e-9b8a-3f2e1d0c9b8a"
        let control = { (path: String, body: String) throws -> String in
            try DaemonProcess.curl([
                "-s", "--max-time", "10", "--cacert", ca, "-H", "Content-Type: application/json", "-d", body,
                "\(base)/_simulator/\(path)",
            ]).stdout
        }
        _ = try control("apps", #"{"tenantId": "\#(Self.tenant)", "clientId": "\#(publicClient)", "isPublicClient": true}"#)
        _ = try control("users", #"{"userPrincipalName": "analyst@contoso.com", "displayName": "Ana Lyst"}"#)
        var environment = ProcessInfo.processInfo.environment
        for name in ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] { environment[name] = nil }
        let client = try DaemonProcess(
            ["python3", repositoryRoot + "/Tests/Clients/msal_device_flow.py", base, Self.tenant, publicClient, ca],
            environment: environment, path: "/usr/bin/env")
        let userCode = try #require(client.waitForLine(startingWith: "user_code "), "\(client.stdout) \(client.stderr)")
        #expect(try control("devicecode/approve", #"{"userCode": "\#(userCode)", "userPrincipalName": "analyst@contoso.com"}"#).contains("ok"))
        #expect(client.waitForExit(timeout: .seconds(60)) == 0, "\(client.stdout) \(client.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data((client.stdout.split(separator: "\n").last ?? "").utf8)) as? [String: Any]
        let claims = summary?["claims"] as? [String: Any]
        #expect(claims?["scp"] as? String == "Alert.Read")
        #expect(claims?["upn"] as? String == "analyst@contoso.com")
        #expect(claims?["roles"] == nil)
        #expect(summary?["username"] as? String == "analyst@contoso.com")  // from the ID token
        #expect(summary?["renewed"] as? Bool == true)  // the refresh token redeemed
        let read = try DaemonProcess.curl(["-s", "--max-time", "10", "--cacert", ca, "\(base)/_simulator/counters"]).stdout
        let counters = try JSONSerialization.jsonObject(with: Data(read.utf8)) as? [String: Any]
        #expect(counters?["refreshTokensRedeemed"] as? Int == 1)
        #expect((counters?["deviceCodePolls"] as? Int ?? 0) >= 1)
        simulator.signal(SIGTERM)
        #expect(simulator.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test func stallsAndTruncationHappenOnTheWire() throws {
        let (simulator, base) = try startSimulator(["--fault", "alerts:stall:count=1", "--fault", "alerts:truncated:count=1"])
        // The fault fires before authentication, like a broken gateway in front of the API.
        let stalled = try DaemonProcess.curl(["--max-time", "2", "-s", "-o", "/dev/null", "-w", "%{http_code}", "\(base)/api/alerts"])
        #expect(stalled.status == 28)  // curl: operation timed out, after the headers came
        #expect(stalled.stdout == "200")
        let truncated = try DaemonProcess.curl(["--max-time", "10", "-s", "-o", "/dev/null", "\(base)/api/alerts"])
        #expect(truncated.status == 18)  // curl: partial file
        let normal = try DaemonProcess.curl(["--max-time", "10", "-s", "-o", "/dev/null", "-w", "%{http_code}", "\(base)/api/alerts"])
        #expect(normal.stdout == "401")
        let deflated = try DaemonProcess.curl([
            "--max-time", "10", "-s", "-D", "-", "-o", "/dev/null", "-H", "Accept-Encoding: deflate", "\(base)/api/alerts",
        ])
        #expect(deflated.stdout.lowercased().contains("content-encoding: deflate"))
        simulator.signal(SIGTERM)
        #expect(simulator.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test func helpDocumentsEveryOption() throws {
        let help = try DaemonProcess.run(["--help"], executable: "defender-sim")
        #expect(help.status == 0)
        for option in [
            "--port", "--tls", "--ca-out", "--seed", "--tenant-id", "--client-id", "--client-secret", "--client-certificate",
            "--roles", "--token-lifetime", "--rate-limit-per-minute", "--rate-limit-per-hour", "--backlog", "--rate",
            "--update-fraction", "--resurface-fraction", "--late-fraction", "--late-seconds", "--batch-size", "--fault",
            "/_simulator/",
        ] {
            #expect(help.stdout.contains(option), "\(option)")
        }
    }

    @Test func refusesNonLoopbackAndBadFaults() throws {
        let wide = try DaemonProcess.run(["--host", "0.0.0.0", "--port", "0"], executable: "defender-sim")
        #expect(wide.status != 0)
        #expect(wide.stderr.contains("loopback"))
        let fault = try DaemonProcess.run(["--fault", "alerts:explode"], executable: "defender-sim")
        #expect(fault.status != 0)
        #expect(fault.stderr.contains("TARGET:KIND"))
    }
}

extension DaemonProcess {
    /// Runs curl (never beyond loopback: every URL here is the simulator's).
    static func curl(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try runToCompletion("/usr/bin/curl", arguments)
    }
}
