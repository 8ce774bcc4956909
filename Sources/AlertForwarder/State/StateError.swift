import Foundation

/// Why the state cannot be used, by kind, so that the pipeline decides between waiting,
/// retrying and stopping. The message says what to do; the state is never reset silently,
/// because that would re-send or lose alerts.
public struct StateError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure it is.
    public enum Kind: String, Sendable {
        /// The store cannot be used now (an I/O error, a database locked too long, a server
        /// that does not answer): wait, and retry.
        case unavailable
        /// No space left, on the disk or in the database: retry once an operator frees some.
        case full
        /// What is stored is damaged: stop; an operator restores a backup or moves it aside.
        case corrupt
        /// Another writer changed the same thing first: read again, and retry.
        case conflict
        /// This daemon no longer holds the tenant's lease: another one polls it now.
        case leaseLost
        /// Another process owns the state (a running daemon): stop.
        case inUse
        /// The state was written by a newer version, or cannot be opened as configured: stop.
        case incompatible
    }

    public var kind: Kind
    public var description: String

    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }

    /// Whether waiting may end it (the pipeline retries these, and stops for the others).
    public var isTransient: Bool {
        switch kind {
        case .unavailable, .full, .conflict: true
        case .corrupt, .leaseLost, .inUse, .incompatible: false
        }
    }

    /// A failed system call on the state's files: `full` for no space or quota left, else
    /// `unavailable`.
    static func system(_ what: String, errno code: Int32) -> StateError {
        let kind: Kind = code == ENOSPC || code == EDQUOT ? .full : .unavailable
        return StateError(kind, "\(what): \(String(cString: strerror(code)))")
    }
}
