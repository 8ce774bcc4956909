import Foundation

/// JSON Lines on standard output.
public struct StdoutSink: AlertSink {
    let layout: RecordLine

    public init(layout: RecordLine) {
        self.layout = layout
    }

    public func send(_ records: [OutboxRecord]) async throws(SinkError) -> [SinkRejection] {
        let (bytes, rejected) = layout.lines(for: records)
        do {
            try FileHandle.standardOutput.write(contentsOf: Data(bytes))
        } catch {
            throw SinkError("writing to standard output failed: \(error.localizedDescription)")
        }
        return rejected
    }
}
