/// What a record the daemon reads is: an alert, or an incident (Defender's correlation of
/// alerts into one attack, which only Microsoft Graph's `security/incidents` lists).
public enum RecordKind: String, Sendable, CaseIterable {
    case alert
    case incident

    /// The kind a state stored: an alert for anything else (what was stored before incidents).
    public init(stored: String) {
        self = RecordKind(rawValue: stored) ?? .alert
    }

    /// As the configuration names them (`records = ["alerts", "incidents"]`).
    public var plural: String { rawValue + "s" }

    /// The member that holds its title: an alert's `title`, an incident's `displayName`.
    public var titleMember: String {
        switch self {
        case .alert: "title"
        case .incident: "displayName"
        }
    }

    /// The application permissions that can read them from Microsoft Graph, least privileged
    /// first (Microsoft Graph, "List alerts_v2" and "List incidents").
    public var graphReadRoles: [String] {
        switch self {
        case .alert: ["SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"]
        case .incident: ["SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All"]
        }
    }

    /// The largest page the API gives of them: incidents 50 (Graph refused `$top=100` for
    /// incidents, "The limit of '50' for Top query has been exceeded", wazuh/wazuh issue
    /// 28070; Elastic's m365_defender caps its batch at 50), alerts as their API says.
    public func maximumPageSize(_ api: AlertsAPI) -> Int {
        switch self {
        case .alert: api.maximumPageSize
        case .incident: 50
        }
    }
}
