import DefenderAPI
import Foundation

/// `[service] state_database`: the state in PostgreSQL, shared by a group of daemons, instead
/// of `state_directory`.
public struct StateDatabaseSettings: Sendable, Equatable {
    /// How the connection is protected, by libpq's `sslmode` names.
    public enum TLSMode: String, Sendable, Equatable, CaseIterable {
        /// No TLS (the default on loopback).
        case disable
        /// TLS, the server's certificate not checked.
        case require
        /// TLS, the certificate checked against the CA, not the name.
        case verifyCA = "verify-ca"
        /// TLS, the certificate checked against the CA and the host name (the default off loopback).
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var user: String
    public var database: String
    public var tls: TLSMode
    /// The CA that signed the server's certificate (`state_database_ca_file`, else `ca_file`,
    /// else the system's).
    public var caFile: String?
    /// From `state_database_password_file` or `_credential`; nil for a server that asks none.
    public var password: Secret?
    /// How long a daemon's hold on a tenant lasts without renewal.
    public var leaseTTL: Duration

    /// `postgresql://USER@HOST:PORT/DB?sslmode=MODE`, as configured (it never holds a password).
    public var url: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return "postgresql://\(user)@\(bracketed):\(port)/\(database)?sslmode=\(tls.rawValue)"
    }

    /// Whether `text`, a PostgreSQL URL, names this database (user, host, port and database;
    /// `sslmode` aside), or why `text` is not a PostgreSQL URL.
    public func isNamed(by text: String) -> Result<Bool, StateError> {
        switch Self.parse(text) {
        case .failure(let error): return .failure(StateError(.incompatible, error.message))
        case .success(let parts):
            return .success(parts.user == user && parts.host.lowercased() == host.lowercased() && parts.port == port && parts.database == database)
        }
    }

    /// Whether the server is this machine.
    public var isLoopback: Bool { Loopback.isLoopback(host: host) }

    /// A warning for `check-config` and the log: credentials and alerts cross the network in
    /// clear text, or to a server whose certificate is not checked.
    public var weakTLSWarning: String? {
        guard !isLoopback else { return nil }
        switch tls {
        case .disable:
            return "state_database: sslmode=disable sends the database password and every alert to \(host) in clear text; use sslmode=verify-full"
        case .require:
            return
                "state_database: sslmode=require encrypts, but accepts any certificate from \(host): anyone on the path can pose as the server; use sslmode=verify-full with state_database_ca_file"
        case .verifyCA, .verifyFull: return nil
        }
    }

    /// The parts of a URL `postgresql://USER@HOST[:PORT]/DATABASE[?sslmode=MODE]` (or
    /// `postgres://`), or why it is not one. A password in it is refused: it would sit in
    /// plain text in the configuration.
    static func parse(_ text: String) -> Result<(host: String, port: Int, user: String, database: String, tls: TLSMode?), ParseError> {
        guard text.hasPrefix("postgresql://") || text.hasPrefix("postgres://"), let components = URLComponents(string: text) else {
            return .failure(
                ParseError(
                    "\"\(SecretRedaction.redactURLPasswords(text))\" is not a PostgreSQL URL such as postgresql://alertd@db.example:5432/alertd"))
        }
        if components.password != nil {
            return .failure(
                ParseError(
                    "\"\(SecretRedaction.redactURLPasswords(text))\" holds a password, which would sit in plain text in the configuration: write postgresql://USER@HOST/DB and put the password in state_database_password_file (mode 0600) or state_database_password_credential"
                ))
        }
        guard let user = components.user, !user.isEmpty else {
            return .failure(ParseError("\(text) names no user: write postgresql://USER@HOST/DB"))
        }
        guard let host = components.host, !host.isEmpty else {
            return .failure(ParseError("\(text) names no host: write postgresql://USER@HOST/DB (a Unix socket is not supported; use 127.0.0.1)"))
        }
        let port: Int
        switch URLAuthority.port(of: text) {
        case .absent: port = 5432
        case .invalid(let value): return .failure(ParseError("\(text): port \"\(value)\" is not 1...65535"))
        case .valid(let value): port = value
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else {
            return .failure(ParseError("\(text) names no database: write postgresql://USER@HOST/DB"))
        }
        var tls: TLSMode?
        for item in components.queryItems ?? [] {
            switch (item.name, item.value) {
            case ("sslmode", let value?):
                guard let mode = TLSMode(rawValue: value) else {
                    let weak = value == "prefer" || value == "allow"
                    return .failure(
                        ParseError(
                            "sslmode=\(value) is not supported\(weak ? " (it falls back to clear text when the server, or anyone on the path, declines TLS)" : ""): use \(TLSMode.allCases.map(\.rawValue).joined(separator: ", "))"
                        ))
                }
                tls = mode
            default:
                return .failure(
                    ParseError(
                        "\(text): the parameter \"\(item.name)\" is not supported (only sslmode; the CA goes in state_database_ca_file, the password in state_database_password_file)"
                    ))
            }
        }
        return .success((host, port, user, database, tls))
    }

    struct ParseError: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }
}
