/// Which Microsoft API a tenant's alerts come from (`docs/microsoft-apis.md` §2 and §6).
public enum AlertsAPI: String, Sendable, CaseIterable {
    /// Defender for Endpoint's own `GET /api/alerts` (Endpoint alerts only).
    case mde
    /// Microsoft Graph `GET /v1.0/security/alerts_v2`: every Defender XDR alert (Endpoint,
    /// Office 365, Identity, Cloud Apps, Purview DLP, Entra ID Protection, Sentinel...).
    case graph

    /// The member that says when an alert last changed (the window's field).
    public var updateTimeMember: String {
        switch self {
        case .mde: "lastUpdateTime"
        case .graph: "lastUpdateDateTime"
        }
    }

    /// The member that says when an alert was created.
    public var creationTimeMember: String {
        switch self {
        case .mde: "alertCreationTime"
        case .graph: "createdDateTime"
        }
    }

    /// The largest `$top`: 10,000 for MDE [AL]; 1,000 for Graph, the only documented
    /// figure (the Graph security constraints page, which Elastic's connector follows) [GE].
    public var maximumPageSize: Int {
        switch self {
        case .mde: 10_000
        case .graph: 1_000
        }
    }

    /// The API's documented call limits per app and tenant: MDE 100 a minute and 1,500 an
    /// hour [AL]; Graph 150 a minute for alerts under `/security` [GT] (no hourly limit: 150
    /// a minute for an hour).
    public var callLimits: (perMinute: Int, perHour: Int) {
        switch self {
        case .mde: (100, 1500)
        case .graph: (150, 9000)
        }
    }

    /// The application permissions that can read alerts, least privileged first.
    public var readRoles: [String] {
        switch self {
        case .mde: ["Alert.Read.All", "Alert.ReadWrite.All"]
        case .graph: RecordKind.alert.graphReadRoles
        }
    }

    /// The application ID of the API's service principal (a token's `aud` may be it instead of
    /// the resource URL): WindowsDefenderATP (`docs/microsoft-apis.md` §1) and Microsoft Graph.
    public var applicationID: String {
        switch self {
        case .mde: "fc780465-2017-40d4-a0c5-307022471b92"
        case .graph: "00000003-0000-0000-c000-000000000000"
        }
    }

    /// Severity values, as the API spells them (a filter compares them exactly).
    public var severities: [String] {
        switch self {
        case .mde: ["UnSpecified", "Informational", "Low", "Medium", "High"]
        case .graph: ["unknown", "informational", "low", "medium", "high"]
        }
    }

    /// Status values, as the API spells them.
    public var statuses: [String] {
        switch self {
        case .mde: ["Unknown", "New", "InProgress", "Resolved"]
        case .graph: ["unknown", "new", "inProgress", "resolved"]
        }
    }

    /// Graph's `serviceSource` values (`microsoft.graph.security.serviceSource`) [GR].
    public static let graphServiceSources = [
        "unknown", "microsoftDefenderForEndpoint", "microsoftDefenderForIdentity", "microsoftDefenderForCloudApps",
        "microsoftDefenderForOffice365", "microsoft365Defender", "azureAdIdentityProtection", "microsoftAppGovernance",
        "dataLossPrevention", "microsoftDefenderForCloud", "microsoftSentinel", "microsoftInsiderRiskManagement",
    ]
}
