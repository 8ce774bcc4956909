import OrderedJSON

/// One element of an alert's `evidence`, read the same way from either API: MDE's flat
/// entities (`entityType` User, Process, File, Ip, Url, Registry... with `fileName`,
/// `processId`, `accountName`... side by side) and Graph's typed ones (`@odata.type`
/// `#microsoft.graph.security.deviceEvidence`, `processEvidence` with its `imageFile` and
/// `userAccount` objects, ...). Both schema mappings read evidence through this only.
struct EvidenceEntity {
    enum Kind: String {
        case device, user, process, file, ip, url, registry, other
    }

    struct Device {
        var hostName: String?
        var id: String?
        var osPlatform: String?
        var osVersion: String?
        var ips: [String] = []
    }

    struct User {
        var name: String?
        var domain: String?
        /// The Windows SID.
        var sid: String?
        /// The Entra ID object id.
        var directoryID: String?
        var principalName: String?
        var displayName: String?
    }

    struct File {
        var name: String?
        /// The folder the file is in, as Defender gives it (`filePath`).
        var directory: String?
        var sha1: String?
        var sha256: String?
        var size: Int64?

        /// The folder and the name joined with the folder's own separator.
        var path: String? {
            guard let name else { return nil }
            guard let directory, !directory.isEmpty else { return nil }
            let separator = directory.contains("\\") ? "\\" : "/"
            return directory.hasSuffix(separator) ? directory + name : directory + separator + name
        }
    }

    struct Process {
        var pid: Int64?
        var commandLine: String?
        var start: String?
        var image: File?
        var parentPID: Int64?
        var parentStart: String?
        var parentImage: File?
        var user: User?
    }

    struct Registry {
        var key: String?
        var hive: String?
        var valueName: String?
        var value: String?
        var valueType: String?
    }

    var kind: Kind
    /// `entityType` (MDE) or `@odata.type` (Graph), as given.
    var type: String
    /// The element as the API returned it.
    var original: JSONValue
    var device: Device?
    var user: User?
    var process: Process?
    var file: File?
    var ip: String?
    var url: String?
    var registry: Registry?
    /// Graph's `verdict`, MDE's `detectionStatus`.
    var verdict: String?

    /// The entities of a record's `evidence` (none when it has no such array); elements that
    /// are not objects are skipped.
    static func all(of record: DefenderRecord) -> [EvidenceEntity] {
        guard case .array(let elements) = record.document["evidence"] else { return [] }
        return elements.compactMap { element in
            guard case .object = element else { return nil }
            return record.isGraph ? graph(element) : mde(element)
        }
    }

    /// The alert's own device: MDE names it at the top (`computerDnsName`, `machineId`), Graph
    /// in its device evidence (the first).
    static func device(of record: DefenderRecord, entities: [EvidenceEntity]) -> Device? {
        if !record.isGraph, let name = record.text(mde: "computerDnsName", graph: nil) {
            return Device(hostName: name, id: record.text(mde: "machineId", graph: nil))
        }
        return entities.first { $0.device != nil }?.device
    }

    // MARK: Microsoft Graph

    private static func graph(_ element: JSONValue) -> EvidenceEntity {
        let type = element["@odata.type"]?.stringValue ?? ""
        let name = type.split(separator: ".").last.map(String.init) ?? ""
        let kind: Kind =
            switch name {
            case "deviceEvidence": .device
            case "userEvidence": .user
            case "processEvidence": .process
            case "fileEvidence": .file
            case "ipEvidence": .ip
            case "urlEvidence": .url
            case "registryKeyEvidence", "registryValueEvidence": .registry
            default: .other
            }
        var entity = EvidenceEntity(kind: kind, type: type, original: element, verdict: text(element["verdict"]))
        switch kind {
        case .device:
            entity.device = Device(
                hostName: text(element["deviceDnsName"]), id: text(element["mdeDeviceId"]),
                osPlatform: text(element["osPlatform"]), osVersion: text(element["version"]),
                ips: element["ipInterfaces"]?.strings ?? [])
        case .user:
            entity.user = element["userAccount"].map(user)
        case .process:
            entity.process = Process(
                pid: integer(element["processId"]), commandLine: text(element["processCommandLine"]),
                start: text(element["processCreationDateTime"]), image: element["imageFile"].map(file),
                parentPID: integer(element["parentProcessId"]), parentStart: text(element["parentProcessCreationDateTime"]),
                parentImage: element["parentProcessImageFile"].map(file), user: element["userAccount"].map(user))
        case .file:
            entity.file = element["fileDetails"].map(file)
        case .ip:
            entity.ip = text(element["ipAddress"])
        case .url:
            entity.url = text(element["url"])
        case .registry:
            entity.registry = registry(element)
        case .other:
            break
        }
        return entity
    }

    // MARK: Both APIs

    /// A user: Graph's `userAccount` object, or MDE's entity itself (the same member names but
    /// the Entra object id, `azureAdUserId` there and `aadUserId` here).
    private static func user(_ object: JSONValue) -> User {
        User(
            name: text(object["accountName"]), domain: text(object["domainName"]), sid: text(object["userSid"]),
            directoryID: text(object["azureAdUserId"]) ?? text(object["aadUserId"]), principalName: text(object["userPrincipalName"]),
            displayName: text(object["displayName"]))
    }

    /// A file: Graph's `fileDetails` or `imageFile` object, or MDE's entity itself (the same
    /// member names; MDE gives no size).
    private static func file(_ object: JSONValue) -> File {
        File(
            name: text(object["fileName"]), directory: text(object["filePath"]), sha1: text(object["sha1"]),
            sha256: text(object["sha256"]), size: integer(object["fileSize"]))
    }

    /// A registry key or value (the same member names in both; MDE names no value).
    private static func registry(_ element: JSONValue) -> Registry {
        Registry(
            key: text(element["registryKey"]), hive: text(element["registryHive"]), valueName: text(element["registryValueName"]),
            value: text(element["registryValue"]), valueType: text(element["registryValueType"]))
    }

    // MARK: Defender for Endpoint

    private static func mde(_ element: JSONValue) -> EvidenceEntity {
        let type = element["entityType"]?.stringValue ?? ""
        let kind: Kind =
            switch type.lowercased() {
            case "machine": .device
            case "user": .user
            case "process": .process
            case "file": .file
            case "ip": .ip
            case "url": .url
            case "registry", "registryvalue", "registrykey": .registry
            default: .other
            }
        var entity = EvidenceEntity(kind: kind, type: type, original: element, verdict: text(element["detectionStatus"]))
        let user = user(element), file = file(element)
        switch kind {
        case .device:
            entity.device = Device(hostName: text(element["computerDnsName"]) ?? text(element["deviceDnsName"]), id: text(element["machineId"]))
        case .user:
            entity.user = user
        case .process:
            let parent = File(name: text(element["parentProcessFileName"]), directory: text(element["parentProcessFilePath"]))
            entity.process = Process(
                pid: integer(element["processId"]), commandLine: text(element["processCommandLine"]),
                start: text(element["processCreationTime"]), image: file, parentPID: integer(element["parentProcessId"]),
                parentStart: text(element["parentProcessCreationTime"]),
                parentImage: parent.name == nil ? nil : parent, user: user.name == nil ? nil : user)
        case .file:
            entity.file = file
        case .ip:
            entity.ip = text(element["ipAddress"])
        case .url:
            entity.url = text(element["url"])
        case .registry:
            entity.registry = registry(element)
        case .other:
            break
        }
        return entity
    }

    // MARK: Values

    private static func text(_ value: JSONValue?) -> String? {
        value.flatMap(JSONValue.scalarText)
    }

    /// An integer given as a number (or its text); nil for anything else.
    private static func integer(_ value: JSONValue?) -> Int64? {
        value.flatMap(JSONValue.scalarText).flatMap { Int64($0) }
    }

    /// The names the entity gives things by, for `related.*` and OCSF observables.
    var hostNames: [String] { [device?.hostName].compactMap { $0 } }
    var ips: [String] { (device?.ips ?? []) + [ip].compactMap { $0 } }
    var userNames: [String] { [user?.name, process?.user?.name].compactMap { $0 } }
    var hashes: [String] {
        [file, process?.image, process?.parentImage].flatMap { [$0?.sha1, $0?.sha256] }.compactMap { $0 }
    }
}
