import Foundation
import OrderedJSON
import Timekeeping

/// Graph's security lists: `GET /v1.0/security/alerts_v2` (the alerts in Graph's shape) and
/// `GET /v1.0/security/incidents` (the incidents the alerts make up, ``GraphIncident``), paged
/// by `@odata.nextLink`, with Graph's audience, permissions, limits and error bodies. Both
/// count against one rate limit per app and tenant, as Graph's `/security` limits apply to
/// any request on it.
extension SimulatedDefender {
    /// A Graph list of the security API.
    enum GraphList {
        case alerts, incidents

        var collection: GraphQuery.Collection {
            switch self {
            case .alerts: .alerts
            case .incidents: .incidents
            }
        }

        /// The permissions that read it, least privileged first (Microsoft Graph, "List
        /// alerts_v2" and "List incidents").
        var permissions: [String] {
            switch self {
            case .alerts: ["SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"]
            case .incidents: ["SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All"]
            }
        }
    }

    func graphList(_ request: SimulatorRequest, _ list: GraphList) -> SimulatorOutcome {
        if let injected = injectFault(for: .alerts, request: request) {
            return SimulatorOutcome(injected.response.graphShaped(), delivery: injected.delivery)
        }
        let now = clock.now()
        let date = now.date
        guard let token = bearer(request, now: now) else {
            return SimulatorOutcome(
                .graphError(401, code: "InvalidAuthenticationToken", message: "Access token is empty, expired or not valid.", now: date))
        }
        // Graph validates the audience before anything else: a token for the MDE API is no token here.
        guard token.audience == Resource.graph else {
            return SimulatorOutcome(
                .graphError(401, code: "InvalidAuthenticationToken", message: "Access token validation failure. Invalid audience.", now: date))
        }
        let held = token.user == nil ? token.roles : token.scopes
        guard list.permissions.contains(where: held.contains) else {
            return SimulatorOutcome(
                .graphError(
                    403, code: "Forbidden",
                    message:
                        "Missing application roles. API required roles: \(list.permissions.joined(separator: ",")). application roles: \(token.roles.joined(separator: ",")).",
                    now: date))
        }
        if let seconds = admit(token, to: &graphLimiter, now: now) {
            return SimulatorOutcome(
                .graphError(429, code: "TooManyRequests", message: "Too many requests.", headers: [("Retry-After", String(seconds))], now: date))
        }
        var query: GraphQuery
        do {
            query = try GraphQuery(queryString: request.query, collection: list.collection)
        } catch {
            return SimulatorOutcome(.graphError(400, code: "BadRequest", message: error.message, now: date))
        }
        if takeFault(for: .alerts, where: { $0 == .ignoreTop }) != nil { query.top = .max }
        let loops = takeFault(for: .alerts, where: { $0 == .nextLinkLoop }) != nil
        player.advance(to: now, store: &store)
        let deviceGroups = token.user?.deviceGroups.map(Set.init)
        let (page, total) =
            switch list {
            case .alerts: store.graphQuery(query, now: now, order: graphResultOrder, deviceGroups: deviceGroups, random: &random)
            case .incidents: store.incidentQuery(query, now: now, deviceGroups: deviceGroups)
            }
        if list == .alerts { counters.alertsServed += page.count } else { counters.incidentsServed += page.count }
        let base = "\(request.baseURL)/v1.0/\(list.collection.path)"
        let context = "\(request.baseURL)/v1.0/$metadata#\(list.collection.path)\(query.expand ? "(\(list.collection.expandable ?? "")())" : "")"
        var members: [(String, JSONValue)] = [("@odata.context", .string(context))]
        if query.count { members.append(("@odata.count", .int(total))) }
        if loops {
            members.append(("@odata.nextLink", .string("\(base)?\(request.query)")))
        } else if query.skip + page.count < total, !page.isEmpty {
            members.append(("@odata.nextLink", .string(query.nextLink(base: base, served: page.count))))
        }
        members.append(("value", .array(page)))
        let id = UUID().uuidString.lowercased()
        var response = SimulatorResponse.json(
            200, .object(members),
            contentType: "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
            headers: [("OData-Version", "4.0"), ("request-id", id), ("client-request-id", id)])
        if let fault = takeFault(for: .alerts, where: \.addsElement) {
            response.body = Self.splice(element(for: fault.kind, now: now, updated: "lastUpdateDateTime"), into: response.body)
        }
        return SimulatorOutcome(response)
    }
}
