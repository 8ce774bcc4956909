import Foundation

/// Runs a program to completion and returns its exit status and output.
/// Output goes through files, so a chatty program cannot block on a full pipe.
public func runToCompletion(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil
)
    throws -> (status: Int32, stdout: String, stderr: String)
{
    let directory = TemporaryDirectory()
    let output = directory.write("stdout", ""), errors = directory.write("stderr", "")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errors))
    try process.run()
    process.waitUntilExit()
    return (process.terminationStatus, try String(contentsOfFile: output, encoding: .utf8), try String(contentsOfFile: errors, encoding: .utf8))
}

/// The outcome of an async call with a typed error, as a `Result` (closures in tests lose
/// typed-throws inference otherwise).
public func capture<T, E: Error>(_ body: () async throws(E) -> T) async -> Result<T, E> {
    do { return .success(try await body()) } catch { return .failure(error) }
}
