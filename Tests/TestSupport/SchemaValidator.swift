import Foundation

/// The schemas' own definitions, read by `Tests/Clients/validate_schemas.py`: Elastic's ECS
/// 9.4.0 field reference and the OCSF 1.3.0–1.8.0 schemas resolved for Detection Finding and
/// Incident Finding, kept beside the repository in `../shared/schemas` (public data that is
/// not copied into it; `DEFENDER_SCHEMAS_DIR` names another place). A test that needs them is
/// enabled only when they are there.
public enum SchemaValidator {
    public static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    public static let directory: String =
        ProcessInfo.processInfo.environment["DEFENDER_SCHEMAS_DIR"]
        ?? URL(fileURLWithPath: packageRoot).deletingLastPathComponent().appendingPathComponent("shared/schemas").path

    /// Whether the ECS and OCSF definitions are there.
    public static var isAvailable: Bool {
        ["ecs/ecs_flat.yml", "ocsf/ocsf-1.3.0.json", "ocsf/ocsf-1.8.0.json"].allSatisfy {
            FileManager.default.fileExists(atPath: directory + "/" + $0)
        }
    }

    /// What the validator finds wrong with `documents` (JSON texts) in `schema` (`ecs` or
    /// `ocsf`): empty when they conform. Throws when the validator cannot run.
    public static func problems(_ schema: String, _ documents: [String]) throws -> [String] {
        let scratch = TemporaryDirectory()
        let file = scratch.write("documents.ndjson", documents.joined(separator: "\n") + "\n")
        let result = try runToCompletion("/usr/bin/env", ["python3", packageRoot + "/Tests/Clients/validate_schemas.py", schema, directory, file])
        let lines = result.stdout.split(separator: "\n").map(String.init)
        guard result.status == 0 || result.status == 1, lines.last?.hasSuffix("problems") == true else {
            throw ValidatorFailure(description: "validate_schemas.py did not run (exit \(result.status)): \(result.stderr.suffix(2000))")
        }
        return Array(lines.dropLast())
    }

    public struct ValidatorFailure: Error, CustomStringConvertible {
        public var description: String
    }
}
