import Foundation

/// The OData options of one list request of Graph's security API, `GET /v1.0/security/alerts_v2`
/// or `GET /v1.0/security/incidents`: the ones each list page documents, and `$skiptoken`,
/// which only the simulator's own `@odata.nextLink`s carry. Anything else is refused, as Graph
/// does.
struct GraphQuery {
    /// What one collection accepts.
    struct Collection: Sendable {
        /// Its path after `/v1.0/`.
        let path: String
        let schema: ODataFilter.Schema
        /// The largest `$top` taken, and a page's size when the request names none.
        let maximumTop: Int
        let defaultTop: Int
        /// The relationship `$expand` takes, if any.
        let expandable: String?
        /// The properties `$orderby` takes.
        let orderable: [String]

        /// `security/alerts_v2`: `$count`, `$filter`, `$skip`, `$top` ([GL]); a `$top` of 1,000
        /// at most, the only documented figure for Graph security alerts [GE].
        static let alerts = Collection(
            path: "security/alerts_v2", schema: .graph, maximumTop: 1000, defaultTop: 100,
            expandable: nil, orderable: [])

        /// `security/incidents`: `$count`, `$filter`, `$skip`, `$top` and `$expand=alerts`
        /// (Microsoft Graph, "List incidents"); a `$top` of 50 at most, as Graph answered a
        /// `$top=100` (wazuh/wazuh issue 28070). `$orderby` on the update or creation time is not
        /// on the page, but Elastic's m365_defender integration sends
        /// `$orderby=lastUpdateDateTime asc` on every request.
        static let incidents = Collection(
            path: "security/incidents", schema: .graphIncident, maximumTop: 50, defaultTop: 50,
            expandable: "alerts", orderable: ["lastUpdateDateTime", "createdDateTime"])
    }

    /// A sort: a property and whether descending.
    struct Order: Equatable {
        var property: String
        var descending: Bool
    }

    let collection: Collection
    var filter: ODataFilter?
    var top: Int?
    var skip = 0
    var count = false
    var expand = false
    var order: Order?
    /// The query without `$skip` and `$skiptoken`, for the next page's link.
    var rest: [(String, String)] = []

    /// The page size this query asks for.
    var pageSize: Int { top ?? collection.defaultTop }

    init(queryString: String, collection: Collection) throws(ODataError) {
        self.collection = collection
        for (name, value) in try QueryString.pairs(queryString) {
            switch name.lowercased() {
            case "$filter":
                filter = try ODataFilter.parse(value, schema: collection.schema)
            case "$top":
                guard let number = Int(value), number >= 0 else {
                    throw ODataError("Invalid $top value '\(value)': a non-negative integer is required.")
                }
                guard number <= collection.maximumTop else {
                    throw ODataError(
                        "The query specified in the URI is not valid. The limit of '\(collection.maximumTop)' for Top query has been exceeded. The value from the incoming request is '\(number)'."
                    )
                }
                top = number
            case "$skip":
                guard let number = Int(value), number >= 0 else {
                    throw ODataError("Invalid $skip value '\(value)': a non-negative integer is required.")
                }
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
            case "$expand" where collection.expandable != nil:
                guard value == collection.expandable else {
                    throw ODataError("Could not find a property named '\(value)' on type '\(collection.schema.typeName)'.")
                }
                expand = true
            case "$orderby" where !collection.orderable.isEmpty:
                order = try Self.order(value, collection: collection)
            default:
                if name.hasPrefix("$") {
                    throw ODataError("Query option '\(name)' is not allowed. Allowed query options: \(Self.allowed(collection)).")
                }
            }
            rest.append((name, value))
        }
    }

    private static func allowed(_ collection: Collection) -> String {
        var options = ["$count", "$filter", "$skip", "$top"]
        if collection.expandable != nil { options.append("$expand") }
        if !collection.orderable.isEmpty { options.append("$orderby") }
        return options.joined(separator: ", ")
    }

    /// `PROPERTY [asc|desc]`.
    private static func order(_ value: String, collection: Collection) throws(ODataError) -> Order {
        let words = value.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard (1...2).contains(words.count), let property = collection.orderable.first(where: { $0.lowercased() == words[0].lowercased() }) else {
            throw ODataError("The $orderby '\(value)' is not supported: order by \(collection.orderable.joined(separator: " or ")), asc or desc.")
        }
        switch words.count == 2 ? words[1].lowercased() : "asc" {
        case "asc": return Order(property: property, descending: false)
        case "desc": return Order(property: property, descending: true)
        default: throw ODataError("The $orderby '\(value)' is not supported: asc or desc.")
        }
    }

    /// The link to the page after one that served `served` items from `skip`.
    func nextLink(base: String, served: Int) -> String {
        let token = Data("skip:\(skip + served)".utf8).base64EncodedString()
        let pairs = rest + [("$skiptoken", token)]
        return base + "?" + pairs.map { "\($0.0)=\(Self.encode($0.1))" }.joined(separator: "&")
    }

    private static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~:'(),"))) ?? text
    }
}
