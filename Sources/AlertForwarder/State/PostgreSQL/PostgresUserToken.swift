import DefenderAPI
import Foundation
import NIOCore
import PostgresNIO

/// A signed-in user's refresh token in PostgreSQL (`user_token`), for a group: whichever
/// member holds the tenant's lease redeems it and stores the rotated one, so the next holder
/// takes the latest. It is kept sealed only (``RefreshTokenSeal`` with the token key): a
/// shared database never holds a usable token.
struct PostgresUserToken: UserTokenStore {
    let database: StateDatabase
    let seal: RefreshTokenSeal

    var location: String { "PostgreSQL (user_token, tenant \(seal.tenant))" }
    var signInCommand: String { seal.signInCommand }

    func load() async throws -> Secret? {
        let rows: [PostgresRow]
        do {
            rows = try await database.query("user token read", "SELECT sealed FROM user_token WHERE tenant = \(seal.tenant)")
        } catch {
            throw RefreshTokenStore.Failure("the refresh token cannot be read from PostgreSQL: \(error)")
        }
        guard let sealed = try decode("user token read", { try rows.first?.decode(ByteBuffer.self) }) else { return nil }
        return try seal.open(Data(sealed.readableBytesView), at: location)
    }

    func save(_ token: Secret) async throws {
        guard seal.hasKey else { throw Self.keyNeeded }
        let bytes = ByteBuffer(data: try seal.seal(token))
        do {
            _ = try await database.query(
                "user token write",
                """
                INSERT INTO user_token (tenant, sealed, updated_at) VALUES (\(seal.tenant), \(bytes), now())
                ON CONFLICT (tenant) DO UPDATE SET sealed = excluded.sealed, updated_at = now()
                """)
        } catch {
            throw RefreshTokenStore.Failure("the refresh token cannot be stored in PostgreSQL: \(error); the one stored before is kept")
        }
    }

    func delete() async throws -> Bool {
        let rows: [PostgresRow]
        do {
            rows = try await database.query("user token delete", "DELETE FROM user_token WHERE tenant = \(seal.tenant) RETURNING 1")
        } catch {
            throw RefreshTokenStore.Failure("the refresh token cannot be deleted from PostgreSQL: \(error)")
        }
        return !rows.isEmpty
    }

    static let keyNeeded = RefreshTokenStore.Failure(
        "a refresh token is stored in PostgreSQL sealed only, and no token key is readable here: set token_key_file (readable by this command and the daemons), or run this where token_key_credential is loaded"
    )
}
