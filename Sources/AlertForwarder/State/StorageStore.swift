/// How much room one part of the state takes: a table (its rows, and its bytes with its
/// indexes) or a set of files (`state show`; the README's sizing figures come from it).
public struct StorageUse: Sendable, Equatable {
    public var name: String
    public var rows: Int?
    public var bytes: Int64?

    public init(name: String, rows: Int?, bytes: Int64?) {
        self.name = name
        self.rows = rows
        self.bytes = bytes
    }
}

/// The room the state takes, part by part.
public protocol StorageStore: Sendable {
    func storage() async throws(StateError) -> [StorageUse]
}
