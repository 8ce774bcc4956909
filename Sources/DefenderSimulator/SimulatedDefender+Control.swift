import Foundation
import OrderedJSON
import Timekeeping

/// The control API's operations (``SimulatorControl`` routes `/_simulator/...` to them; tests
/// call them directly): alerts added, updated and listed, faults, tokens revoked, users and apps
/// registered, the scenario replaced.
extension SimulatedDefender {
    /// Adds alerts; `visibleAfter` seconds after their `lastUpdateTime` they become queryable.
    @discardableResult
    public func addAlerts(_ objects: [JSONValue], visibleAfter: Double = 0) throws(SimulatorSetupError) -> [String] {
        var ids: [String] = []
        for object in objects {
            guard let text = object["lastUpdateTime"]?.stringValue, let updated = Timestamp(parsing: text) else {
                throw SimulatorSetupError("an alert needs a \"lastUpdateTime\" in ISO 8601 (UTC, 0-7 fraction digits)")
            }
            ids.append(try store.upsert(object, visibleFrom: updated.adding(seconds: visibleAfter)))
        }
        return ids
    }

    /// Generates `count` alerts sharing one `lastUpdateTime` (default: now).
    @discardableResult
    public func generateAlerts(
        count: Int, lastUpdateTime: Timestamp? = nil, visibleAfter: Double = 0,
        severity: String? = nil
    ) throws(SimulatorSetupError) -> [String] {
        let time = lastUpdateTime ?? clock.now()
        let objects = (0..<count).map { _ in generator.makeAlert(lastUpdateTime: time, severity: severity) }
        return try addAlerts(objects, visibleAfter: visibleAfter)
    }

    /// Generates `count` alerts of another Defender XDR service (`serviceSource`, such as
    /// `microsoftDefenderForOffice365`), which only Graph lists.
    @discardableResult
    public func generateGraphAlerts(
        count: Int, serviceSource: String, lastUpdateTime: Timestamp? = nil,
        visibleAfter: Double = 0
    ) throws(SimulatorSetupError) -> [String] {
        guard GraphServiceSources.known.contains(serviceSource), serviceSource != "microsoftDefenderForEndpoint" else {
            throw SimulatorSetupError(
                "serviceSource must be another Defender XDR service than Endpoint: \(GraphServiceSources.known.filter { $0 != "microsoftDefenderForEndpoint" }.joined(separator: ", "))"
            )
        }
        let time = lastUpdateTime ?? clock.now()
        var ids: [String] = []
        for _ in 0..<count {
            ids.append(
                try store.upsert(
                    generator.makeGraphAlert(serviceSource: serviceSource, lastUpdateTime: time),
                    visibleFrom: time.adding(seconds: visibleAfter), graphOnly: true))
        }
        return ids
    }

    /// Changes an alert as an analyst would (or sets `changes` exactly); a new `lastUpdateTime`.
    @discardableResult
    public func updateAlert(
        id: String, changes: [(String, JSONValue)] = [], at time: Timestamp? = nil,
        visibleAfter: Double = 0
    ) throws(SimulatorSetupError) -> JSONValue {
        guard let stored = store.alert(id: id) else { throw SimulatorSetupError("no alert with id \(id)") }
        guard !stored.graphOnly else { throw SimulatorSetupError("alert \(id) is a Graph-only alert; updates are for Endpoint alerts") }
        let time = time ?? clock.now()
        var object = changes.isEmpty ? generator.update(stored.object, at: time) : stored.object
        for (name, value) in changes { object.set(name, value) }
        object.set("lastUpdateTime", .string(time.description))
        try store.upsert(object, visibleFrom: time.adding(seconds: visibleAfter))
        return object
    }

    /// How many alerts there are, visible or not (the scenario's arrivals so far included).
    public func alertCount() -> Int {
        player.advance(to: clock.now(), store: &store)
        return store.count
    }

    /// Every alert, visible or not, in creation order.
    public func allAlerts() -> [JSONValue] {
        player.advance(to: clock.now(), store: &store)
        return store.alerts.map(\.object)
    }

    public func addFault(_ fault: Fault) throws(SimulatorSetupError) {
        try fault.validate()
        faults.append(fault)
    }

    /// The order of results of both APIs.
    public func setResultOrder(_ order: ResultOrder) {
        resultOrder = order
        graphResultOrder = order
    }

    public func clearFaults() {
        faults.removeAll()
    }

    /// Revokes every token issued so far (the API answers 401 until a new one is fetched).
    public func revokeTokens() {
        for key in tokens.issued.keys { tokens.issued[key]?.revoked = true }
    }

    /// Adds (or replaces) a user who can sign in with the device code flow.
    public func add(_ user: SimulatedUser) throws(SimulatorSetupError) {
        guard tokens.tenants.contains(where: { $0.id == user.tenantID }) else { throw SimulatorSetupError("unknown tenant \(user.tenantID)") }
        tokens.delegated.users.removeAll { $0.userPrincipalName == user.userPrincipalName && $0.tenantID == user.tenantID }
        tokens.delegated.users.append(user)
    }

    /// Approves the pending sign-in with `userCode` as `user`, or declines it (`user` nil).
    public func decideDeviceCode(_ userCode: String, user: String?) throws(SimulatorSetupError) {
        try tokens.decide(userCode: userCode, user: user)
    }

    /// Revokes every refresh and access token of a user (a password reset, an admin's revocation).
    public func revokeUser(_ user: String) throws(SimulatorSetupError) {
        try tokens.revoke(user: user)
    }

    /// Polls answered `slow_down` when they come sooner than `interval` (RFC 8628 §3.5).
    public func setDeviceCodeSlowDown(_ on: Bool) {
        tokens.delegated.slowDown = on
    }

    /// Refuses every refresh of the user's tokens with `code` (50076, 50079, 50158, 53003,
    /// 700082 or 50173) and `error` (by default the one that code comes with) until the user
    /// signs in again; `code` nil: refreshes work again.
    public func refuseRefreshes(of user: String, code: EntraErrorCode?, error: String? = nil) throws(SimulatorSetupError) {
        try tokens.refuseRefreshes(user: user, code: code, error: error)
    }

    /// The `message` (`{code}` stands for the user code) and `verification_uri` of the device
    /// code answers from now on; nil: Entra ID's own.
    public func setDeviceCodeAnswer(message: String?, verificationURI: String?) {
        tokens.delegated.answerMessage = message
        tokens.delegated.answerVerificationURI = verificationURI
    }

    public func register(_ app: RegisteredApp) throws(SimulatorSetupError) {
        guard tokens.tenants.contains(where: { $0.id == app.tenantID }) else {
            throw SimulatorSetupError("unknown tenant \(app.tenantID)")
        }
        tokens.apps.removeAll { $0.tenantID == app.tenantID && $0.clientID == app.clientID }
        tokens.apps.append(app)
    }

    /// Replaces the running scenario; arrivals count from now.
    public func setScenario(_ scenario: Scenario) throws(SimulatorSetupError) {
        try scenario.validate()
        let scenarioSeed = seed &+ 0x9E37 &+ UInt64(store.count)
        player = ScenarioPlayer(
            scenario: scenario, start: clock.now(),
            generator: AlertGenerator(seed: scenarioSeed, tenantID: generator.tenantID), seed: scenarioSeed)
        player.seedBacklog(into: &store)
    }

    public var counterSnapshot: SimulatorCounters {
        var snapshot = counters
        snapshot.deviceCodePolls = tokens.delegated.polls
        snapshot.refreshTokensRedeemed = tokens.delegated.redeemed
        snapshot.refreshTokensReused = tokens.delegated.reused
        snapshot.clientAssertionsReused = tokens.reusedAssertions
        return snapshot
    }
}
