import Crypto
import Foundation

/// Which member of a group polls which tenant: every member computes the same answer from
/// the same tenants and live members (sorted, whatever order it learnt them in). Rendezvous
/// hashing (each tenant goes to the member that ranks highest for it, by SHA-256 of both
/// names) with bounds: every member gets ⌊tenants / members⌋ or one more, so the spread is
/// even to one tenant and a member that joins gets its share; and when a member joins or
/// leaves, mostly the tenants that must move do.
enum TenantAssignment {
    /// Tenant name → member id. Empty when there is no member.
    static func assign(tenants: [String], members: [String]) -> [String: String] {
        let members = Array(Set(members)).sorted()
        guard !members.isEmpty else { return [:] }
        let tenants = Array(Set(tenants)).sorted()
        let base = tenants.count / members.count
        var load = [String: Int]()
        var assignment = [String: String]()
        // The tenants with the strongest preference go first, so that the bound moves the
        // fewest tenants away from their first choice.
        let ranked = tenants.map { tenant in (tenant, members.sorted { weight(tenant, $0) > weight(tenant, $1) }) }
        let order = ranked.sorted { lhs, rhs in
            let (l, r) = (weight(lhs.0, lhs.1[0]), weight(rhs.0, rhs.1[0]))
            return l != r ? l > r : lhs.0 < rhs.0
        }
        // Every member up to the base share first (the tenants fill all of it: there are at
        // least as many), then the tenants left over, one more each to as many members.
        for (tenant, preference) in order {
            guard let member = preference.first(where: { load[$0, default: 0] < base }) else { continue }
            load[member, default: 0] += 1
            assignment[tenant] = member
        }
        for (tenant, preference) in order where assignment[tenant] == nil {
            guard let member = preference.first(where: { load[$0, default: 0] == base }) else { continue }
            load[member, default: 0] += 1
            assignment[tenant] = member
        }
        return assignment
    }

    /// The rendezvous weight of a member for a tenant: the first 8 bytes of SHA-256.
    static func weight(_ tenant: String, _ member: String) -> UInt64 {
        let digest = SHA256.hash(data: Data("\(tenant)\u{0}\(member)".utf8))
        return digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}
