import TestSupport
import Testing

@testable import AlertForwarder

/// The executable's last resort when a stop does not end: a critical line naming what it
/// waited for, then exit status 70.
@Suite("Stop deadline")
struct StopDeadlineTests {
    @Test func armedItEndsTheProcessWithWhatTheStopWaitedFor() async {
        let records = LogRecords()
        let (statuses, exit) = AsyncStream.makeStream(of: Int32.self)
        // A short deadline stands in for the 25 s; the test waits for the exit it causes.
        let deadline = StopDeadline(after: .milliseconds(20), logger: records.logger(), report: { "the pipeline's sink archive" }) { status in
            exit.yield(status)
        }
        deadline.arm()
        var iterator = statuses.makeAsyncIterator()
        let status = await iterator.next()
        #expect(status == 70)
        let line = records.at(.critical)
        #expect(line.count == 1)
        #expect(line.first?.message.contains("did not stop within") == true)
        #expect(line.first?.metadata["waiting_for"] == "the pipeline's sink archive")
    }
}
