import Foundation

/// The OData options of one `GET /api/alerts` request.
public struct AlertsQuery: Sendable, Equatable {
    public var filter: ODataFilter?
    public var top: Int?
    public var skip: Int
    public var expandEvidence: Bool

    /// The largest `$top` the API accepts.
    public static let maximumTop = 10_000

    /// Parses a raw query string (`$filter=...&$top=...`): `+` means space, `%XX` is decoded.
    public init(queryString: String) throws(ODataError) {
        filter = nil
        top = nil
        skip = 0
        expandEvidence = false
        for (name, value) in try QueryString.pairs(queryString) {
            switch name.lowercased() {
            case "$filter":
                filter = try ODataFilter.parse(value)
            case "$top":
                guard let number = Int(value), number >= 0 else {
                    throw ODataError(
                        "Invalid value '\(value)' for $top query option found. The $top query option requires a non-negative integer value.")
                }
                guard number <= Self.maximumTop else {
                    throw ODataError(
                        "The limit of '\(Self.maximumTop)' for Top query has been exceeded. The value from the incoming request is '\(number)'.")
                }
                top = number
            case "$skip":
                guard let number = Int(value), number >= 0 else {
                    throw ODataError(
                        "Invalid value '\(value)' for $skip query option found. The $skip query option requires a non-negative integer value.")
                }
                skip = number
            case "$expand":
                let items = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                for item in items where item.lowercased() != "evidence" {
                    throw ODataError("Could not find a property named '\(item)' on type 'microsoft.windowsDefenderATP.api.PublicAlert'.")
                }
                expandEvidence = !items.isEmpty
            default:
                if name.hasPrefix("$") {
                    throw ODataError("Query option '\(name)' is not supported by this API.")
                }
            }
        }
    }
}

/// The name-value pairs of a raw query string (`$filter=...&$top=...`): `+` means space,
/// `%XX` is decoded.
enum QueryString {
    static func pairs(_ text: String) throws(ODataError) -> [(name: String, value: String)] {
        try text.split(separator: "&", omittingEmptySubsequences: true).map { pair throws(ODataError) in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(parts[0]), let value = decode(parts.count > 1 ? parts[1] : "") else {
                throw ODataError("The query string is not valid percent-encoded text.")
            }
            return (name, value)
        }
    }

    private static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}
