import Foundation

/// The OData options of one `GET /v1.0/security/alerts_v2` request: the ones its list page
/// documents (`$count`, `$filter`, `$skip`, `$top`; [GL]) and `$skiptoken`, which only the
/// simulator's own `@odata.nextLink`s carry. Anything else is refused, as Graph does.
struct GraphAlertsQuery {
    var filter: ODataFilter?
    var top: Int?
    var skip = 0
    var count = false
    /// The query without `$skip` and `$skiptoken`, for the next page's link.
    var rest: [(String, String)] = []

    /// The largest `$top` taken: the only documented figure for Graph security alerts [GE].
    static let maximumTop = 1000
    /// A page's size when the request names none (Graph's usual server page).
    static let defaultTop = 100

    init(queryString: String) throws(ODataError) {
        for (name, value) in try QueryString.pairs(queryString) {
            switch name.lowercased() {
            case "$filter":
                filter = try ODataFilter.parse(value, schema: .graph)
            case "$top":
                guard let number = Int(value), number >= 0 else { throw ODataError("Invalid $top value '\(value)': a non-negative integer is required.") }
                guard number <= Self.maximumTop else {
                    throw ODataError("The limit of '\(Self.maximumTop)' for Top query has been exceeded. The value from the incoming request is '\(number)'.")
                }
                top = number
            case "$skip":
                guard let number = Int(value), number >= 0 else { throw ODataError("Invalid $skip value '\(value)': a non-negative integer is required.") }
                skip = number
                continue
            case "$skiptoken":
                guard let data = Data(base64Encoded: value), let text = String(data: data, encoding: .utf8), text.hasPrefix("skip:"),
                    let number = Int(text.dropFirst(5)), number >= 0
                else { throw ODataError("The $skiptoken '\(value)' is not valid; use the @odata.nextLink exactly as returned.") }
                skip = number
                continue
            case "$count":
                guard let flag = Bool(value.lowercased()) else { throw ODataError("Invalid $count value '\(value)': true or false.") }
                count = flag
            default:
                if name.hasPrefix("$") { throw ODataError("Query option '\(name)' is not allowed. Allowed query options: $count, $filter, $skip, $top.") }
            }
            rest.append((name, value))
        }
    }

    /// The link to the page after one that served `served` alerts from `skip`.
    func nextLink(base: String, served: Int) -> String {
        let token = Data("skip:\(skip + served)".utf8).base64EncodedString()
        let pairs = rest + [("$skiptoken", token)]
        return base + "?" + pairs.map { "\($0.0)=\(Self.encode($0.1))" }.joined(separator: "&")
    }

    private static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~:'(),"))) ?? text
    }
}
