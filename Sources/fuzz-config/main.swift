// The configuration loader's libFuzzer target: any bytes as the text of the configuration
// file, through TOML parsing (TOMLKit), every key's validation and the summary. Built with
// coverage and AddressSanitizer for every module by `scripts/fuzz.sh build-config` (make
// reliability), which defines FUZZING and links libFuzzer without its main; a plain build
// makes a replayer that runs each file given on the command line (regressions, no fuzzer).
import AlertForwarder
import Foundation

let loader = ConfigurationLoader(environment: [:])

/// One input: the configuration's text. A refusal is fine; a crash, a hang or a refusal without
/// a message is not.
func loadConfiguration(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        let configuration = try loader.parse(text, path: "/nonexistent/fuzz.toml")
        _ = Daemon.summary(of: configuration)
    } catch {
        precondition(!error.errors.isEmpty && error.errors.allSatisfy { !$0.description.isEmpty }, "a refusal without a message")
    }
    return 0
}

#if FUZZING
    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzer(
        _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(runFuzzer(&argc, &argv) { loadConfiguration($0, $1) })
#else
    for path in CommandLine.arguments.dropFirst() {
        guard let data = FileManager.default.contents(atPath: path) else { fatalError("cannot read \(path)") }
        _ = data.withUnsafeBytes { loadConfiguration($0.bindMemory(to: UInt8.self).baseAddress, data.count) }
    }
#endif
