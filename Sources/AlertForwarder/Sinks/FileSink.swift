import Foundation
import Synchronization

/// JSON Lines appended to a file: created 0640, fsync'd before a batch counts as delivered,
/// rotated by size (`alerts.jsonl` -> `alerts.jsonl.1` -> ... keeping `maxFiles`), and
/// reopened on SIGHUP so logrotate can move it away.
public final class FileSink: AlertSink {
    private struct State {
        var descriptor: Int32 = -1
        var size: Int64 = 0
    }

    let path: String
    let layout: RecordLine
    /// Rotate when a batch would grow the file past this many bytes (0: never).
    let maxSize: Int64
    /// Rotated files kept.
    let maxFiles: Int
    private let state = Mutex(State())
    /// Makes a directory's entries durable (`fsync` of the directory); injectable for tests.
    let syncDirectory: @Sendable (String) -> Int32

    public init(
        path: String, layout: RecordLine, maxSize: Int64, maxFiles: Int,
        syncDirectory: @escaping @Sendable (String) -> Int32 = FileSink.fsyncDirectory
    ) {
        self.path = path
        self.layout = layout
        self.maxSize = maxSize
        self.maxFiles = maxFiles
        self.syncDirectory = syncDirectory
    }

    /// `fsync` of the directory at `path`: 0, or -1 with `errno` set.
    public static func fsyncDirectory(_ path: String) -> Int32 {
        let descriptor = Foundation.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return -1 }
        defer { close(descriptor) }
        return fsync(descriptor)
    }

    deinit {
        state.withLock { if $0.descriptor >= 0 { close($0.descriptor) } }
    }

    /// The write and its `fsync` run off the cooperative pool (``Blocking``).
    public func send(_ records: [OutboxRecord]) async throws(SinkError) -> [SinkRejection] {
        let (bytes, rejected) = layout.lines(for: records)
        try await Blocking.run { () throws(SinkError) in try self.append(bytes) }
        return rejected
    }

    private func append(_ bytes: [UInt8]) throws(SinkError) {
        try state.withLock { (state: inout State) throws(SinkError) in
            if state.descriptor < 0 { try open(&state) }
            if maxSize > 0, state.size > 0, state.size + Int64(bytes.count) > maxSize {
                try rotate(&state)
            }
            var written = 0
            while written < bytes.count {
                let result = bytes[written...].withUnsafeBytes { Foundation.write(state.descriptor, $0.baseAddress, $0.count) }
                if result < 0 {
                    if errno == EINTR { continue }
                    let (code, reason) = (errno, String(cString: strerror(errno)))
                    // Drop what may be a partial line: the alerts stay queued and are written again.
                    _ = ftruncate(state.descriptor, off_t(state.size))
                    throw SinkError("writing \(path) failed: \(reason)", kind: Self.kind(of: code))
                }
                written += result
            }
            guard fsync(state.descriptor) == 0 else {
                let (code, reason) = (errno, String(cString: strerror(errno)))
                _ = ftruncate(state.descriptor, off_t(state.size))
                throw SinkError("fsync of \(path) failed: \(reason)", kind: Self.kind(of: code))
            }
            state.size += Int64(bytes.count)
        }
    }

    public func reopen() async {
        state.withLock { state in
            if state.descriptor >= 0 { close(state.descriptor) }
            state.descriptor = -1
        }
    }

    private func open(_ state: inout State) throws(SinkError) {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) {
            do {
                try FileManager.default.createDirectory(
                    atPath: directory, withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o750])
                _ = syncDirectory((directory as NSString).deletingLastPathComponent)
            } catch {
                throw SinkError("cannot create \(directory): \(error.localizedDescription)", kind: .needsOperator)
            }
        }
        let descriptor = Foundation.open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard descriptor >= 0 else {
            let code = errno
            throw SinkError("cannot open \(path): \(String(cString: strerror(code)))", kind: Self.kind(of: code))
        }
        // A new file, and the names a rotation changed, are only durable once the directory
        // is: without this a power loss could lose a file whose alerts were confirmed. Every
        // open syncs it (opens are rare: start, rotation, SIGHUP, recovery after a failure).
        try syncParent(closingOnFailure: descriptor)
        var info = stat()
        fstat(descriptor, &info)
        state.descriptor = descriptor
        state.size = Int64(info.st_size)
        // A previous run may have died mid-line. That batch was never confirmed, so its alerts
        // are still queued: cut the partial line off; it is written again whole.
        var end = state.size
        var byte: UInt8 = 0
        while end > 0, pread(descriptor, &byte, 1, off_t(end - 1)) == 1, byte != UInt8(ascii: "\n") { end -= 1 }
        if end < state.size, ftruncate(descriptor, off_t(end)) == 0 { state.size = end }
    }

    private func rotate(_ state: inout State) throws(SinkError) {
        close(state.descriptor)
        state.descriptor = -1
        let manager = FileManager.default
        if maxFiles > 0 {
            try? manager.removeItem(atPath: "\(path).\(maxFiles)")
            for index in stride(from: maxFiles - 1, through: 1, by: -1) where manager.fileExists(atPath: "\(path).\(index)") {
                _ = Foundation.rename("\(path).\(index)", "\(path).\(index + 1)")
            }
            guard Foundation.rename(path, "\(path).1") == 0 else {
                throw SinkError("rotating \(path) failed: \(String(cString: strerror(errno)))", kind: Self.kind(of: errno))
            }
        } else {
            try? manager.removeItem(atPath: path)
        }
        try open(&state)
    }

    private func syncParent(closingOnFailure descriptor: Int32) throws(SinkError) {
        let directory = (path as NSString).deletingLastPathComponent
        guard syncDirectory(directory.isEmpty ? "." : directory) == 0 else {
            let code = errno
            close(descriptor)
            throw SinkError("fsync of the directory \(directory) failed: \(String(cString: strerror(code)))", kind: Self.kind(of: code))
        }
    }

    /// Permissions, a read-only file system or a directory in the way need a person; a full
    /// disk or an I/O error may pass.
    static func kind(of code: Int32) -> SinkError.Kind {
        switch code {
        case EACCES, EPERM, EROFS, EISDIR, ENOTDIR, ENOENT, ELOOP, ENAMETOOLONG: .needsOperator
        default: .retryable
        }
    }
}
