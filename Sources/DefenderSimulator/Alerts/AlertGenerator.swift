import OrderedJSON
import Timekeeping

/// Makes realistic MDE alerts: every documented field in documented order, plausible values,
/// ids in the observed format, mixed severities, statuses, categories, detection sources,
/// evidence of every entity type, timestamps with 0 to 7 fraction digits, and the
/// undocumented fields real responses carry (`loggedOnUsers`, `domains`, evidence
/// `registryValueName`). Deterministic for a given seed.
public struct AlertGenerator: Sendable {
    private var random: SeededRandom
    /// The tenant the alerts belong to (`aadTenantId`).
    public let tenantID: String
    /// The incident and device of the alert made last: an attack raises several alerts on one
    /// device, which Defender correlates into one incident.
    private var lastIncident: (id: Int, host: String)?

    public init(seed: UInt64, tenantID: String) {
        random = SeededRandom(seed: seed)
        self.tenantID = tenantID
    }

    private struct Template {
        var title: String
        var description: String
        var category: String
        var detectionSource: String
        var severities: [String]
        var mitre: [String]
        var evidence: [String]
        var threatFamily: String?
    }

    private static let templates: [Template] = [
        Template(
            title: "Suspicious access to LSASS service",
            description:
                "A process accessed the memory of the Local Security Authority Subsystem Service (LSASS) in a way that may indicate credential theft.",
            category: "CredentialAccess", detectionSource: "WindowsDefenderAtp", severities: ["High", "Medium"], mitre: ["T1003", "T1003.001"],
            evidence: ["User", "Process", "File"]),
        Template(
            title: "'Mimikatz' hacktool was detected",
            description: "Readily available tools, such as hacking programs, can be used by unauthorized individuals to spy on users.",
            category: "Malware", detectionSource: "WindowsDefenderAv", severities: ["High"], mitre: [], evidence: ["File", "Process"],
            threatFamily: "Mimikatz"),
        Template(
            title: "Suspicious PowerShell command line",
            description:
                "A suspicious PowerShell activity was observed on the machine. This behavior may indicate that PowerShell was used during installation, exploration, or in some cases in lateral movement activities.",
            category: "Execution", detectionSource: "WindowsDefenderAtp", severities: ["Medium", "Low"], mitre: ["T1059.001"],
            evidence: ["Process", "User", "Url"]),
        Template(
            title: "Automated investigation started manually", description: "An automated investigation was initiated manually on the device.",
            category: "SuspiciousActivity", detectionSource: "AutomatedInvestigation", severities: ["Informational", "Low"], mitre: [],
            evidence: ["Ip"]),
        Template(
            title: "Suspicious registry modification for persistence",
            description: "A process modified a registry run key in a way commonly used to survive reboots.",
            category: "Persistence", detectionSource: "WindowsDefenderAtp", severities: ["Medium"], mitre: ["T1547.001"],
            evidence: ["Registry", "Process"]),
        Template(
            title: "Connection to a known command and control server",
            description: "The device connected to an IP address associated with a command and control infrastructure.",
            category: "CommandAndControl", detectionSource: "WindowsDefenderAtp", severities: ["High", "Medium"], mitre: ["T1071"],
            evidence: ["Ip", "Url", "Process"]),
        Template(
            title: "Tampering with Microsoft Defender for Endpoint settings",
            description: "An attempt to turn off or modify Microsoft Defender Antivirus protections was detected.",
            category: "DefenseEvasion", detectionSource: "WindowsDefenderAtp", severities: ["Medium", "High"], mitre: ["T1562.001"],
            evidence: ["Process", "Registry"]),
        Template(
            title: "Potentially unwanted application was detected",
            description: "A potentially unwanted application (PUA) was detected on the device.",
            category: "UnwantedSoftware", detectionSource: "WindowsDefenderAv", severities: ["Low", "Informational"], mitre: [], evidence: ["File"],
            threatFamily: "PUA:Win32/Presenoker"),
        Template(
            title: "Suspicious sequence of exploration activities",
            description: "A process called a set of windows commands that are commonly used by attackers to explore the network.",
            category: "Discovery", detectionSource: "WindowsDefenderAtp", severities: ["Low", "Medium"], mitre: ["T1016", "T1049", "T1087"],
            evidence: ["Process", "User"]),
        Template(
            title: "Custom detection: rare outbound SMB",
            description: "Custom detection rule matched outbound SMB traffic to an address outside the organization.",
            category: "LateralMovement", detectionSource: "CustomDetection", severities: ["UnSpecified", "Medium"], mitre: ["T1021.002"],
            evidence: ["Ip", "Process"]),
    ]

    private static let hosts = ["ws-fin-0142", "ws-hr-0031", "srv-sql-07", "lt-sales-2201", "ws-dev-0420", "srv-dc-01", "lt-exec-0007"]
    private static let users = [
        ("jdoe", "CONTOSO"), ("meganb", "CONTOSO"), ("alexw", "CONTOSO"), ("svc_backup", "CONTOSO"), ("admin", "WS-DEV-0420"),
    ]
    private static let groups = ["Finance-Workstations", "Servers-Tier0", "Sales-Laptops", nil]

    /// A device's id: 40 hex digits, the same for every alert of the device (FNV-1a of its name).
    static func machineID(of host: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var digits = ""
        while digits.count < 40 {
            for byte in (host + digits).utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            digits += String(hash, radix: 16).leftPadded(to: 16)
        }
        return String(digits.prefix(40))
    }

    /// A new alert last updated at `updated`, created shortly before.
    public mutating func makeAlert(lastUpdateTime updated: Timestamp, severity: String? = nil, status: String = "New") -> JSONValue {
        let template = random.pick(Self.templates)
        let created = stamp(updated.adding(seconds: -Double(Int.random(in: 1...300, using: &random))))
        let firstEvent = stamp(created.adding(seconds: -Double(Int.random(in: 5...600, using: &random))))
        let lastEvent = stamp(firstEvent.adding(seconds: Double(Int.random(in: 0...120, using: &random))))
        let prefix = template.detectionSource == "AutomatedInvestigation" ? "ar" : "da"
        let id = "\(prefix)\(created.dotNetTicks)_\(Int32.random(in: .min ... .max, using: &random))"
        let incident: Int
        let host: String
        if let last = lastIncident, random.chance(0.4) {
            (incident, host) = last
        } else {
            (incident, host) = (Int.random(in: 10_000...99_999, using: &random), random.pick(Self.hosts))
        }
        lastIncident = (incident, host)
        let user = random.pick(Self.users)
        let fqdn = random.chance(0.7) ? "\(host).corp.contoso.com" : host
        let investigationState = random.pick(["Queued", "Running", "PendingApproval", "Benign", "SuccessfullyRemediated", "UnsupportedAlertType"])
        let severity = severity ?? random.pick(template.severities)

        var members: [(String, JSONValue)] = [
            ("id", .string(id)),
            ("incidentId", .int(incident)),
            ("investigationId", random.chance(0.8) ? .int(Int.random(in: 10_000...99_999, using: &random)) : .null),
            ("assignedTo", random.chance(0.2) ? .string("secops-tier1@contoso.com") : .null),
            ("severity", .string(severity)),
            ("status", .string(status)),
            ("classification", .null),
            ("determination", .null),
            ("investigationState", .string(investigationState)),
            ("detectionSource", .string(template.detectionSource)),
            ("detectorId", .string(random.guid())),
            ("category", .string(template.category)),
            ("threatFamilyName", template.threatFamily.map { .string($0) } ?? .null),
            ("title", .string(template.title)),
            ("description", .string(template.description + (random.chance(0.2) ? "\nSee the alert story for the full process tree." : ""))),
            ("alertCreationTime", .string(created.description)),
            ("firstEventTime", .string(firstEvent.description)),
            ("lastEventTime", .string(lastEvent.description)),
            ("lastUpdateTime", .string(updated.description)),
            ("resolvedTime", .null),
            ("machineId", .string(Self.machineID(of: host))),
            ("computerDnsName", .string(fqdn)),
            ("rbacGroupName", random.pick(Self.groups).map { .string($0) } ?? .null),
            ("aadTenantId", .string(tenantID)),
            ("threatName", template.threatFamily.map { .string("HackTool:Win32/\($0)") } ?? .null),
            ("mitreTechniques", .array(template.mitre.map { .string($0) })),
            ("relatedUser", random.chance(0.7) ? .object([("userName", .string(user.0)), ("domainName", .string(user.1))]) : .null),
            ("loggedOnUsers", .array([.object([("accountName", .string(user.0)), ("domainName", .string(user.1))])])),
            ("comments", .array([])),
            ("evidence", .array(template.evidence.map { evidence(of: $0, at: created, user: user, host: host) })),
            ("domains", random.chance(0.3) ? .array([.object([("host", .string("login-contoso.example"))])]) : .array([])),
        ]
        if random.chance(0.1) {
            // Fields the documentation does not list yet: clients must pass them through.
            members.append(("recommendedAction", .string("Isolate the device and collect an investigation package.")))
        }
        return .object(members)
    }

    /// An alert of another Defender XDR service than Endpoint, which only Graph's
    /// `security/alerts_v2` lists: in Graph's shape, with the service's own fields.
    public mutating func makeGraphAlert(serviceSource: String, lastUpdateTime updated: Timestamp) -> JSONValue {
        var alert = GraphAlert.from(makeAlert(lastUpdateTime: updated))
        let id = random.guid()
        let tenant = alert["tenantId"]?.stringValue ?? ""
        let (product, title, category): (String, String, String) =
            switch serviceSource {
            case "microsoftDefenderForOffice365":
                ("Microsoft Defender for Office 365", "Email messages containing malicious URL removed after delivery", "InitialAccess")
            case "microsoftDefenderForIdentity":
                ("Microsoft Defender for Identity", "Suspected DCSync attack (replication of directory services)", "CredentialAccess")
            case "microsoftDefenderForCloudApps": ("Microsoft Defender for Cloud Apps", "Impossible travel activity", "InitialAccess")
            case "dataLossPrevention":
                ("Microsoft Purview Data Loss Prevention", "DLP policy match for document containing credit card numbers", "Exfiltration")
            default: ("Microsoft Defender XDR", "Multi-stage incident involving initial access", "InitialAccess")
            }
        for (name, value) in [
            ("id", id), ("providerAlertId", id), ("serviceSource", serviceSource), ("detectionSource", serviceSource),
            ("productName", product), ("title", title), ("category", category),
            ("alertWebUrl", "https://security.microsoft.com/alerts/\(id)?tid=\(tenant)"),
        ] {
            alert.set(name, .string(value))
        }
        // No device: the evidence is the user (and, for mail, the mailbox).
        alert.set(
            "evidence",
            .array([
                .object([
                    ("@odata.type", .string("#microsoft.graph.security.userEvidence")), ("createdDateTime", alert["createdDateTime"] ?? .null),
                    ("verdict", .string("suspicious")), ("remediationStatus", .string("none")), ("remediationStatusDetails", .null),
                    ("roles", .array([])), ("detailedRoles", .array([])), ("tags", .array([])),
                    (
                        "userAccount",
                        .object([
                            ("accountName", .string("meganb")), ("domainName", .string("CONTOSO")),
                            ("userPrincipalName", .string("meganb@contoso.com")), ("displayName", .string("Megan Bowen")),
                        ])
                    ),
                ])
            ]))
        return alert
    }

    /// A timestamp written with a random number of fraction digits (7 most often).
    public mutating func stamp(_ time: Timestamp) -> Timestamp {
        time.writtenWith(random.pick([7, 7, 7, 7, 0, 1, 2, 3, 6]))
    }

    private mutating func evidence(of type: String, at time: Timestamp, user: (String, String), host: String) -> JSONValue {
        let fields = [
            "entityType", "evidenceCreationTime", "sha1", "sha256", "fileName", "filePath", "processId",
            "processCommandLine", "processCreationTime", "parentProcessId", "parentProcessCreationTime",
            "parentProcessFileName", "parentProcessFilePath", "ipAddress", "url", "registryKey", "registryHive",
            "registryValueType", "registryValue", "registryValueName", "accountName", "domainName", "userSid",
            "aadUserId", "userPrincipalName", "detectionStatus",
        ]
        var values: [String: JSONValue] = [
            "entityType": .string(type),
            "evidenceCreationTime": .string(stamp(time.adding(seconds: 1)).description),
            "detectionStatus": random.chance(0.5) ? .string(random.pick(["Detected", "Blocked", "Prevented"])) : .null,
        ]
        switch type {
        case "File", "Process":
            let name = random.pick(["mimikatz.exe", "powershell.exe", "rundll32.exe", "invoice_2025.pdf.exe", "procdump64.exe"])
            values["sha1"] = .string(random.hex(40))
            values["sha256"] = .string(random.hex(64))
            values["fileName"] = .string(name)
            values["filePath"] = .string("C:\\Users\\\(user.0)\\AppData\\Local\\Temp")
            if type == "Process" {
                values["processId"] = .int(Int.random(in: 100...65_000, using: &random))
                values["processCommandLine"] = .string(
                    "\(name) -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA \"quoted\" \\\\share")
                values["processCreationTime"] = .string(stamp(time.adding(seconds: -30)).description)
                values["parentProcessId"] = .int(Int.random(in: 100...65_000, using: &random))
                values["parentProcessCreationTime"] = .string(stamp(time.adding(seconds: -3600)).description)
                values["parentProcessFileName"] = .string("explorer.exe")
                values["parentProcessFilePath"] = .string("C:\\Windows")
            }
        case "User":
            values["accountName"] = .string(user.0)
            values["domainName"] = .string(user.1)
            values["userSid"] = .string("S-1-5-21-1004336348-1177238915-682003330-\(Int.random(in: 1000...9999, using: &random))")
            values["aadUserId"] = .string(random.guid())
            values["userPrincipalName"] = .string("\(user.0)@contoso.com")
        case "Ip":
            values["ipAddress"] = .string("203.0.113.\(Int.random(in: 1...254, using: &random))")
        case "Url":
            values["url"] = .string("https://login-contoso.example/oauth?session=\(random.hex(8))&ü=✓")
        case "Registry":
            values["registryKey"] = .string("SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run")
            values["registryHive"] = .string("HKEY_LOCAL_MACHINE")
            values["registryValueType"] = .string("String")
            values["registryValue"] = .string("C:\\ProgramData\\\(host)\\updater.exe")
            values["registryValueName"] = .string("Updater")
        default:
            break
        }
        return .object(fields.map { ($0, values[$0] ?? .null) })
    }

    /// A change to an existing alert as an analyst or automation makes it: status,
    /// assignment, classification or a comment; `lastUpdateTime` becomes `updated`.
    public mutating func update(_ alert: JSONValue, at updated: Timestamp) -> JSONValue {
        var alert = alert
        switch Int.random(in: 0..<4, using: &random) {
        case 0:
            let status = random.pick(["InProgress", "Resolved"])
            alert.set("status", .string(status))
            if status == "Resolved" { alert.set("resolvedTime", .string(updated.description)) }
        case 1:
            alert.set("assignedTo", .string(random.pick(["secops-tier1@contoso.com", "alexw@contoso.com", "API Action"])))
        case 2:
            alert.set("classification", .string(random.pick(["TruePositive", "FalsePositive", "InformationalExpectedActivity"])))
            alert.set("determination", .string(random.pick(["Malware", "SecurityTesting", "Other", "NotMalicious"])))
        default:
            var comments: [JSONValue] = []
            if case .array(let existing)? = alert["comments"] { comments = existing }
            comments.append(
                .object([
                    ("comment", .string(random.pick(["Host isolated pending triage.", "Red team exercise, expected.", "Escalated to tier 2."]))),
                    ("createdBy", .string("secops-tier1@contoso.com")),
                    ("createdTime", .string(updated.description)),
                ]))
            alert.set("comments", .array(comments))
        }
        alert.set("lastUpdateTime", .string(updated.description))
        return alert
    }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
