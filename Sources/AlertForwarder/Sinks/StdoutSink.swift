import Foundation

/// JSON Lines on standard output.
public struct StdoutSink: AlertSink {
    let layout: RecordLine

    public init(layout: RecordLine) {
        self.layout = layout
    }

    public func send(_ records: [OutboxRecord]) async throws(SinkError) -> [SinkRejection] {
        do {
            try FileHandle.standardOutput.write(contentsOf: Data(layout.lines(for: records)))
        } catch {
            throw SinkError("writing to standard output failed: \(error.localizedDescription)")
        }
        return []
    }
}
