import Foundation

/// JSON Lines on standard output.
public struct StdoutSink: AlertSink {
    let format: RecordFormat

    public init(format: RecordFormat) {
        self.format = format
    }

    public func send(_ records: [OutboxRecord]) async throws(SinkError) {
        var text = ""
        for record in records { text += RecordLine.line(for: record, format: format) + "\n" }
        do {
            try FileHandle.standardOutput.write(contentsOf: Data(text.utf8))
        } catch {
            throw SinkError("writing to standard output failed: \(error.localizedDescription)")
        }
    }
}
