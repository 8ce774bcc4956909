import DefenderAPI
import Testing
import Timekeeping

@testable import AlertForwarder

/// The watermark moves with complete windows only: a Graph window read page by page moves it
/// with its last page, and a chain given up (to be read again in halves) never lets a half
/// that is read move it past the half that is not.
@Suite("Watermark progress over batches")
struct WatermarkProgressTests {
    static func time(_ minute: Int) -> Timestamp { Timestamp(parsing: "2025-03-14T10:\(minute < 10 ? "0" : "")\(minute):00Z")! }
    static let far = time(59)

    func batch(_ minutes: [Int], lower: Int, upper: Int?, complete: Bool) throws -> AlertBatch {
        let alerts = try minutes.enumerated().map { index, minute in
            try Alert(json: #"{"id":"a\#(minute)_\#(index)","lastUpdateDateTime":"\#(Self.time(minute).description)"}"#, api: .graph)
        }
        return AlertBatch(
            alerts: alerts, rejected: [], lower: .inclusive(Self.time(lower)), upper: upper.map(Self.time), serverTime: nil, complete: complete)
    }

    @Test func aChainMovesTheWatermarkWithItsLastPage() throws {
        var progress = WatermarkProgress()
        #expect(progress.move(after: try batch([40, 5], lower: 0, upper: 50, complete: false), notAfter: Self.far) == .hold)
        #expect(progress.move(after: try batch([20], lower: 0, upper: 50, complete: false), notAfter: Self.far) == .hold)
        // The newest of the whole window, not of the last page.
        #expect(progress.move(after: try batch([10], lower: 0, upper: 50, complete: true), notAfter: Self.far) == .to(Self.time(40)))
    }

    @Test func aChainGivenUpLeavesNothingBehind() throws {
        var progress = WatermarkProgress()
        // Pages of [0, 50) reached minute 45, then the chain was given up and the window is
        // read again in halves: [0, 25) complete must move the watermark to 24 at most, never
        // to 45 (minutes 25 to 45 are not all read yet).
        _ = progress.move(after: try batch([45, 30], lower: 0, upper: 50, complete: false), notAfter: Self.far)
        #expect(progress.move(after: try batch([24, 3], lower: 0, upper: 25, complete: true), notAfter: Self.far) == .to(Self.time(24)))
        #expect(progress.move(after: try batch([45, 30], lower: 25, upper: 50, complete: true), notAfter: Self.far) == .to(Self.time(45)))
    }

    @Test func alertsAfterTheServersPresentAndEmptyWindowsHold() throws {
        var progress = WatermarkProgress()
        #expect(progress.move(after: try batch([58], lower: 0, upper: nil, complete: true), notAfter: Self.time(30)) == .hold)
        #expect(progress.move(after: try batch([], lower: 0, upper: nil, complete: true), notAfter: Self.far) == .hold)
        #expect(progress.move(after: try batch([12, 58], lower: 0, upper: nil, complete: true), notAfter: Self.time(30)) == .to(Self.time(12)))
    }
}
