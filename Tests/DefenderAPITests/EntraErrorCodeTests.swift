import DefenderSimulator
import Foundation
import Testing

@testable import DefenderAPI

/// Every AADSTS code the simulator can send (every ``EntraErrorCode``: an error body cannot
/// carry another) is documented in Tests/Fixtures/README.md with a public source, and the
/// client reads it as that table says.
@Suite("AADSTS codes: sources and readings")
struct EntraErrorCodeTests {
    /// A row of the table "AADSTS codes the simulator sends".
    struct Row {
        var code: Int
        var error: String
        var status: Int
        var source: String
        var reading: String
    }

    static func rows() throws -> [Int: Row] {
        let text = try String(contentsOfFile: repositoryRootPath + "/Tests/Fixtures/README.md", encoding: .utf8)
        let section = try #require(
            text.components(separatedBy: "## AADSTS codes the simulator sends").dropFirst().first,
            "the fixtures README has no section \"AADSTS codes the simulator sends\"")
        let table = section.components(separatedBy: "Codes the client reads that the simulator does not send")[0]
        var rows: [Int: Row] = [:]
        for line in table.split(separator: "\n") where line.hasPrefix("| AADSTS") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            try #require(cells.count == 7, "\(line)")
            let code = try #require(Int(cells[1].dropFirst("AADSTS".count)), "\(line)")
            let error = try #require(cells[2].firstMatch(of: /`([a-z_]+)`/).map { String($0.1) }, "\(line)")
            let status = try #require(cells[2].firstMatch(of: /\b([1-5][0-9][0-9])\b/).flatMap { Int($0.1) }, "\(line)")
            rows[code] = Row(code: code, error: error, status: status, source: cells[4], reading: cells[5])
        }
        return rows
    }

    /// The answer the simulator writes for a code (the body shape of `TokenEndpoint.error`).
    static func answer(_ row: Row) -> HTTPExchangeResponse {
        let body =
            #"{"error":"\#(row.error)","error_description":"AADSTS\#(row.code): text\r\nTrace ID: 0\r\nCorrelation ID: 0\r\nTimestamp: 2025-03-14 10:00:00Z","error_codes":[\#(row.code)]}"#
        return HTTPExchangeResponse(status: row.status, headers: [("Content-Type", "application/json; charset=utf-8")], body: Data(body.utf8))
    }

    @Test func everyCodeTheSimulatorSendsHasASourceAndTheClientReadsItAsDocumented() throws {
        let rows = try Self.rows()
        for code in EntraErrorCode.allCases {
            guard let row = rows[code.rawValue] else {
                Issue.record("AADSTS\(code.rawValue) (\(code)) is sent by the simulator but not listed in Tests/Fixtures/README.md")
                continue
            }
            #expect(row.source.contains("https://"), "AADSTS\(row.code) has no public source: \(row.source)")
            let reading: String
            do {
                _ = try TokenProvider.interpret(Self.answer(row), endpoint: "https://login.example/token", now: 0)
                Issue.record("AADSTS\(row.code) was read as a token")
                continue
            } catch {
                reading = TokenProvider.refusalNeedsSignIn(error) ? "sign-in needed" : error.kind.rawValue
            }
            if row.reading.hasPrefix("device code") {
                // Read by DeviceCodeLogin by its `error` (DeviceCodeLoginTests).
                #expect(["authorization_pending", "bad_verification_code", "expired_token"].contains(row.error), "AADSTS\(row.code)")
            } else if row.error == "invalid_grant" || row.error == "interaction_required" {
                // In a refresh: the sign-in is needed; elsewhere the error is permanent.
                #expect(row.reading.hasPrefix("sign-in needed") && reading == "sign-in needed", "AADSTS\(row.code): \(row.reading) / \(reading)")
            } else {
                #expect(row.reading.hasPrefix(reading), "AADSTS\(row.code): the README says \(row.reading), the client reads \(reading)")
            }
        }
        // And nothing listed that the simulator cannot send.
        #expect(Set(rows.keys) == Set(EntraErrorCode.allCases.map(\.rawValue)))
    }

    /// AADSTS7000274 was read as "try again later"; Microsoft.Identity.Web lists it among
    /// certificate errors.
    @Test(arguments: [7000274, 7000214, 7000277, 1000502])
    func certificateErrorsArePermanentWithTheCertificateHint(code: Int) throws {
        let row = Row(code: code, error: "invalid_client", status: 401, source: "", reading: "")
        do {
            _ = try TokenProvider.interpret(Self.answer(row), endpoint: "https://login.example/token", now: 0)
            Issue.record("read as a token")
        } catch {
            #expect(error.kind == .permanent)
            #expect(error.hint?.contains("certificate") == true, "\(error)")
        }
    }

    /// 50196 LoopDetected, a 429 and a 5xx: waiting mends them, whatever the `error`.
    @Test func loopsThrottlingAndServerErrorsStayTransient() throws {
        for (status, code) in [(400, 50196), (429, 90055), (503, 90033)] {
            let row = Row(code: code, error: "invalid_request", status: status, source: "", reading: "")
            do {
                _ = try TokenProvider.interpret(Self.answer(row), endpoint: "https://login.example/token", now: 0)
                Issue.record("read as a token")
            } catch {
                #expect(error.kind == .transient, "AADSTS\(code)")
                #expect(!TokenProvider.refusalNeedsSignIn(error))
            }
        }
    }
}
