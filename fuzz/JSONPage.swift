// libFuzzer target: the byte-level JSON scanner and the tree parser (OrderedJSON), as an
// alerts page reaches them. Built with OrderedJSON's sources into one module (scripts/fuzz.sh).
//
// Properties checked on every input, besides "no crash, no sanitizer report":
// - every element range lies inside the input, in order, without overlap;
// - an element reported without a problem is itself a valid JSON document;
// - what the tree parser accepts, serialised and parsed again, is the same value.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSONPage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var scanner = JSONScanner(bytes)
    if let elements = try? scanner.document(arrayMember: "value", collecting: ["id", "lastUpdateTime"], limit: 10_000).elements {
        var end = 0
        for element in elements {
            precondition(element.range.lowerBound >= end && element.range.upperBound <= size, "element outside the input")
            end = element.range.upperBound
            for member in element.members.compactMap({ $0 }) {
                precondition(element.range.contains(member.lowerBound) && member.upperBound <= element.range.upperBound)
                _ = scanner.string(at: member)
                _ = scanner.number(at: member)
            }
            if element.problem == nil {
                var alone = JSONScanner(UnsafeBufferPointer(rebasing: bytes[element.range]))
                do { try alone.validateDocument() } catch { preconditionFailure("an element reported valid is not: \(error)") }
            }
        }
    }
    let input = Data(bytes)
    if let value = try? JSONValue(parsing: input) {
        guard let again = try? JSONValue(parsing: value.data) else { preconditionFailure("the serialised value does not parse") }
        precondition(again == value, "a round trip changed the value")
    }
    var members = JSONScanner(bytes)
    _ = try? members.members(["id", "title"])
    return 0
}
