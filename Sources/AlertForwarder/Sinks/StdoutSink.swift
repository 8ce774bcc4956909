import Foundation

/// JSON Lines on standard output.
public struct StdoutSink: AlertSink {
    let layout: RecordLine

    public init(layout: RecordLine) {
        self.layout = layout
    }

    public func send(_ records: [OutboxRecord]) async throws(SinkError) {
        var text = ""
        for record in records { text += layout.line(for: record) + "\n" }
        do {
            try FileHandle.standardOutput.write(contentsOf: Data(text.utf8))
        } catch {
            throw SinkError("writing to standard output failed: \(error.localizedDescription)")
        }
    }
}
