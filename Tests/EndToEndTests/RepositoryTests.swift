import Foundation
import TestSupport
import Testing

/// What a fresh clone gets: no file that git should ignore (a committed `.demo/` once broke
/// `make demo` for every new user), the pinned dependencies, and executable scripts.
@Suite("Repository", .enabled(if: FileManager.default.fileExists(atPath: repositoryRoot + "/.git"), "needs a git checkout"))
struct RepositoryTests {
    private func git(_ arguments: String...) throws -> String {
        let result = try runToCompletion("/usr/bin/env", ["git", "-C", repositoryRoot] + arguments)
        #expect(result.status == 0, "git \(arguments.joined(separator: " ")): \(result.stderr)")
        return result.stdout
    }

    @Test func noTrackedFileIsUnderAnIgnoredPath() throws {
        let ignored = try git("ls-files", "-ci", "--exclude-standard")
        #expect(ignored.isEmpty, "tracked but ignored (git rm --cached them):\n\(ignored)")
    }

    @Test func dependenciesArePinned() throws {
        #expect(try git("ls-files", "Package.resolved") == "Package.resolved\n", "Package.resolved must be committed")
        let makefile = try String(contentsOfFile: repositoryRoot + "/Makefile", encoding: .utf8)
        #expect(makefile.contains("--force-resolved-versions"), "the build must refuse to resolve versions other than the pinned ones")
    }

    /// `make demo` on a fresh machine once installed the whole test toolchain (rsyslog,
    /// debootstrap, pip packages) and upgraded the host's systemd: it installs only what the
    /// build needs.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/make"), "needs make"))
    func theDemoInstallsOnlyWhatTheBuildNeeds() throws {
        let plan = try runToCompletion("/usr/bin/make", ["-n", "-C", repositoryRoot, "demo"])
        #expect(plan.status == 0, "\(plan.stderr)")
        let installs = plan.stdout.split(separator: "\n").filter { $0.contains("apt-install") || $0.contains("pip") || $0.contains("apt-get") }
        #expect(installs.count == 1, "\(plan.stdout)")
        let packages = Set(installs.first.map { $0.split(separator: " ").dropFirst().map(String.init) } ?? [])
        #expect(packages == ["libsystemd-dev", "libdeflate-dev", "pkg-config", "libsqlite3-dev", "python3"], "\(installs)")
    }

    @Test func trackedScriptsAreExecutable() throws {
        let entries = try git("ls-files", "-s", "scripts", "benchmarks", ".ci", "debian/rules").split(separator: "\n")
        let scripts = entries.filter { $0.hasSuffix(".sh") || $0.hasSuffix(".py") || $0.hasSuffix("/run") || $0.hasSuffix("debian/rules") }
        #expect(!scripts.isEmpty)
        for entry in scripts {
            #expect(entry.hasPrefix("100755"), "not executable in git: \(entry)")
        }
    }

    @Test func thePackageVersionIsTheProgramsVersion() throws {
        let changelog = try String(contentsOfFile: repositoryRoot + "/debian/changelog", encoding: .utf8)
        let packaged = try #require(changelog.firstMatch(of: /^defender-alertd \(([^)]+)\)/)?.1)
        let result = try DaemonProcess.run(["--version"])
        #expect(
            result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == String(packaged),
            "debian/changelog says \(packaged), defender-alertd --version says \(result.stdout)")
    }
}
