// libFuzzer target: the text parsers of time (Timekeeping): API timestamps, configuration
// durations, Retry-After. Built with Timekeeping's sources into one module (scripts/fuzz.sh).
//
// Properties: no crash; a parsed timestamp written out parses back to the same instant; a
// parsed duration formatted parses back to itself; a Retry-After wait is within 0...1 hour.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTimeText(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let time = Timestamp(parsing: text) {
        guard let again = Timestamp(parsing: time.description) else { preconditionFailure("\(time) does not parse") }
        precondition(again == time && again.fractionDigits == time.fractionDigits, "timestamp round trip")
    }
    if let duration = ConfigDuration.parse(text) {
        precondition(duration >= .zero)
        precondition(ConfigDuration.parse(ConfigDuration.format(duration)) == duration, "duration round trip")
    }
    if let (wait, _) = RetryAfter.parse(text, now: 1_764_000_000) {
        precondition(wait >= .zero && wait <= RetryAfter.maximum, "Retry-After outside 0...1h")
    }
    return 0
}
