import OrderedJSON
import Timekeeping

/// The Microsoft Graph `security/alerts_v2` view of a simulated alert: the same alert (same
/// `id`, as Graph's `id` and `providerAlertId` equal MDE's for Endpoint alerts) in Graph's
/// shape, member order and vocabulary (`docs/microsoft-apis.md` §6, the `alert` resource [GR] and
/// `Tests/Fixtures/graph-alerts-v2-page.json`): camelCase enum values, a string `incidentId`,
/// `createdDateTime`/`lastUpdateDateTime`/`firstActivityDateTime`/`lastActivityDateTime`,
/// portal links, and typed evidence with the device as `deviceEvidence`.
enum GraphAlert {
    static func from(_ mde: JSONValue) -> JSONValue {
        func text(_ name: String) -> JSONValue { mde[name].flatMap { $0.stringValue }.map { .string($0) } ?? .null }
        let id = mde["id"]?.stringValue ?? ""
        let tenant = mde["aadTenantId"]?.stringValue ?? ""
        let incident: JSONValue = mde["incidentId"].flatMap(number).map { .string($0) } ?? .null
        var members: [(String, JSONValue)] = [
            ("@odata.type", .string("#microsoft.graph.security.alert")),
            ("id", .string(id)),
            ("providerAlertId", .string(id)),
            ("incidentId", incident),
            ("status", camel(mde["status"], unknown: "unknown")),
            ("severity", mde["severity"]?.stringValue == "UnSpecified" ? .string("unknown") : camel(mde["severity"], unknown: "unknown")),
            ("classification", camel(mde["classification"], unknown: nil)),
            ("determination", camel(mde["determination"], unknown: nil)),
            ("serviceSource", .string("microsoftDefenderForEndpoint")),
            ("detectionSource", .string(detectionSource(mde["detectionSource"]?.stringValue))),
            ("productName", .string("Microsoft Defender for Endpoint")),
            ("detectorId", text("detectorId")),
            ("tenantId", .string(tenant)),
            ("title", text("title")),
            ("description", text("description")),
            ("recommendedActions", mde["recommendedAction"]?.stringValue.map { .string($0) } ?? .string("")),
            ("category", text("category")),
            ("assignedTo", text("assignedTo")),
            ("alertWebUrl", .string("https://security.microsoft.com/alerts/\(id)?tid=\(tenant)")),
            (
                "incidentWebUrl",
                incident == .null ? .null : .string("https://security.microsoft.com/incidents/\(incident.stringValue ?? "")?tid=\(tenant)")
            ),
            ("actorDisplayName", .null),
            ("threatDisplayName", text("threatName")),
            ("threatFamilyName", text("threatFamilyName")),
            ("mitreTechniques", mde["mitreTechniques"] ?? .array([])),
            ("createdDateTime", text("alertCreationTime")),
            ("lastUpdateDateTime", text("lastUpdateTime")),
            ("resolvedDateTime", text("resolvedTime")),
            ("firstActivityDateTime", text("firstEventTime")),
            ("lastActivityDateTime", text("lastEventTime")),
            ("systemTags", .array([])),
            ("alertPolicyId", .null),
            ("comments", .array(comments(mde["comments"]))),
            ("customDetails", .object([])),
            ("additionalData", .object([])),
        ]
        members.append(("evidence", .array([device(mde)] + evidence(mde))))
        return .object(members)
    }

    /// `"InProgress"` → `"inProgress"`; null stays null (or `unknown` when given).
    private static func camel(_ value: JSONValue?, unknown: String?) -> JSONValue {
        guard let text = value?.stringValue, let first = text.first else { return unknown.map { .string($0) } ?? .null }
        return .string(first.lowercased() + text.dropFirst())
    }

    private static func number(_ value: JSONValue) -> String? {
        if case .number(let text) = value { return text }
        return value.stringValue
    }

    /// Graph's `detectionSource` names for MDE's.
    private static func detectionSource(_ mde: String?) -> String {
        switch mde {
        case "WindowsDefenderAv"?: "antivirus"
        case "WindowsDefenderSmartScreen"?: "smartScreen"
        case "CustomerTI"?: "customTi"
        case "AutomatedInvestigation"?: "automatedInvestigation"
        case "CustomDetection"?: "customDetection"
        default: "microsoftDefenderForEndpoint"
        }
    }

    private static func comments(_ value: JSONValue?) -> [JSONValue] {
        guard case .array(let items)? = value else { return [] }
        return items.map { item in
            .object([
                ("comment", item["comment"] ?? .null),
                ("createdByDisplayName", item["createdBy"] ?? .null),
                ("createdDateTime", item["createdTime"] ?? .null),
            ])
        }
    }

    private static func base(_ type: String, created: JSONValue?) -> [(String, JSONValue)] {
        [
            ("@odata.type", .string("#microsoft.graph.security.\(type)")),
            ("createdDateTime", created ?? .null),
            ("verdict", .string("suspicious")),
            ("remediationStatus", .string("none")),
            ("remediationStatusDetails", .null),
            ("roles", .array([])),
            ("detailedRoles", .array([])),
            ("tags", .array([])),
        ]
    }

    /// The alert's device (MDE's `machineId`, `computerDnsName`, `rbacGroupName`, `loggedOnUsers`).
    private static func device(_ mde: JSONValue) -> JSONValue {
        var members = base("deviceEvidence", created: mde["alertCreationTime"])
        let users: [JSONValue]
        if case .array(let items)? = mde["loggedOnUsers"] {
            users = items.map { .object([("accountName", $0["accountName"] ?? .null), ("domainName", $0["domainName"] ?? .null)]) }
        } else {
            users = []
        }
        members += [
            ("firstSeenDateTime", mde["alertCreationTime"] ?? .null),
            ("mdeDeviceId", mde["machineId"] ?? .null),
            ("azureAdDeviceId", .null),
            ("deviceDnsName", mde["computerDnsName"] ?? .null),
            ("osPlatform", .string("Windows11")),
            ("healthStatus", .string("active")),
            ("riskScore", .string("medium")),
            ("rbacGroupName", mde["rbacGroupName"] ?? .null),
            ("onboardingStatus", .string("onboarded")),
            ("defenderAvStatus", .string("updated")),
            ("loggedOnUsers", .array(users)),
        ]
        return .object(members)
    }

    /// MDE's evidence entities as Graph's typed evidence.
    private static func evidence(_ mde: JSONValue) -> [JSONValue] {
        guard case .array(let items)? = mde["evidence"] else { return [] }
        return items.compactMap { item in
            let created = item["evidenceCreationTime"]
            let file: JSONValue = .object([
                ("sha1", item["sha1"] ?? .null), ("sha256", item["sha256"] ?? .null), ("fileName", item["fileName"] ?? .null),
                ("filePath", item["filePath"] ?? .null), ("fileSize", .null), ("filePublisher", .null), ("signer", .null), ("issuer", .null),
            ])
            switch item["entityType"]?.stringValue {
            case "File":
                return .object(
                    base("fileEvidence", created: created) + [
                        ("detectionStatus", camel(item["detectionStatus"], unknown: nil)),
                        ("mdeDeviceId", mde["machineId"] ?? .null), ("fileDetails", file),
                    ])
            case "Process":
                return .object(
                    base("processEvidence", created: created) + [
                        ("processId", item["processId"] ?? .null), ("parentProcessId", item["parentProcessId"] ?? .null),
                        ("processCommandLine", item["processCommandLine"] ?? .null),
                        ("processCreationDateTime", item["processCreationTime"] ?? .null),
                        ("parentProcessCreationDateTime", item["parentProcessCreationTime"] ?? .null),
                        ("detectionStatus", camel(item["detectionStatus"], unknown: nil)), ("mdeDeviceId", mde["machineId"] ?? .null),
                        ("imageFile", file),
                    ])
            case "User":
                return .object(
                    base("userEvidence", created: created) + [
                        (
                            "userAccount",
                            .object([
                                ("accountName", item["accountName"] ?? .null), ("domainName", item["domainName"] ?? .null),
                                ("userSid", item["userSid"] ?? .null), ("azureAdUserId", item["aadUserId"] ?? .null),
                                ("userPrincipalName", item["userPrincipalName"] ?? .null), ("displayName", .null),
                            ])
                        )
                    ])
            case "Ip":
                return .object(base("ipEvidence", created: created) + [("ipAddress", item["ipAddress"] ?? .null), ("countryLetterCode", .null)])
            case "Url":
                return .object(base("urlEvidence", created: created) + [("url", item["url"] ?? .null)])
            case "Registry":
                return .object(
                    base("registryValueEvidence", created: created) + [
                        ("registryKey", item["registryKey"] ?? .null), ("registryHive", item["registryHive"] ?? .null),
                        ("registryValue", item["registryValue"] ?? .null), ("registryValueName", item["registryValueName"] ?? .null),
                        ("registryValueType", item["registryValueType"] ?? .null), ("mdeDeviceId", mde["machineId"] ?? .null),
                    ])
            default:
                return nil
            }
        }
    }
}

/// Graph's `serviceSource` values (`microsoft.graph.security.serviceSource`) [GR].
enum GraphServiceSources {
    static let known = [
        "microsoftDefenderForEndpoint", "microsoftDefenderForIdentity", "microsoftDefenderForCloudApps", "microsoftDefenderForOffice365",
        "microsoft365Defender", "azureAdIdentityProtection", "microsoftAppGovernance", "dataLossPrevention", "microsoftDefenderForCloud",
        "microsoftSentinel", "microsoftInsiderRiskManagement",
    ]
}
