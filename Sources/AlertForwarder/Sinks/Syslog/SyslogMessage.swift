import OrderedJSON
import Timekeeping

/// syslog facilities (RFC 5424 §6.2.1), by the names syslog.conf uses; the code is the
/// position (kern 0 … local7 23).
public enum SyslogFacility: String, CaseIterable, Sendable {
    case kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, security, console
    case solarisCron = "solaris-cron"
    case local0, local1, local2, local3, local4, local5, local6, local7

    public var code: Int { Self.allCases.firstIndex(of: self)! }
}

/// The syslog message format.
public enum SyslogProtocol: String, CaseIterable, Sendable {
    /// RFC 5424: RFC 3339 timestamp, structured data.
    case rfc5424
    /// RFC 3164 (BSD syslog), for receivers that know nothing newer.
    case rfc3164
}

/// One alert as a syslog message, without framing or line end. The severity is the alert's
/// (High 2 crit, Medium 3 err, Low 4 warning, Informational 5 notice, anything else 6 info:
/// the journal's `PRIORITY`), the time its `lastUpdateTime` (the time it was stored when the
/// alert has none), MSG the body given (the alert's JSON, or a CEF line).
///
/// RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [defender@N alertId="…" tenant="…"
/// severity="…" event="…" kind="alert"] MSG`, MSGID the event (`created`, `updated`); an
/// incident's MSGID is `incident-created` or `incident-updated` and its parameters name
/// `incidentId` and `kind="incident"`. Header fields are printable ASCII without spaces (others
/// become `_`) and cut to their maximum lengths (§6); parameter values escape `"`, `\` and `]`
/// (§6.3.3) and write control characters as `\uXXXX`; fractions of seconds are cut to six
/// digits (§6.2.3). RFC 3164: `<PRI>Mmm dd
/// hh:mm:ss HOSTNAME APP-NAME: MSG`, the time in UTC (the format has no zone).
public struct SyslogMessage: Sendable, Equatable {
    public var syslogProtocol: SyslogProtocol
    public var facility: SyslogFacility
    public var hostname: String
    public var appName: String
    /// The private enterprise number in the structured data's ID (`defender@32473`: 32473 is
    /// the number RFC 5612 reserves for documentation).
    public var enterpriseNumber: Int

    public init(
        syslogProtocol: SyslogProtocol = .rfc5424, facility: SyslogFacility = .local0, hostname: String,
        appName: String = "defender-alertd", enterpriseNumber: Int = 32473
    ) {
        self.syslogProtocol = syslogProtocol
        self.facility = facility
        self.hostname = hostname
        self.appName = appName
        self.enterpriseNumber = enterpriseNumber
    }

    /// The message for `record`, with `body` as MSG.
    public func bytes(for record: OutboxRecord, body: [UInt8]) -> [UInt8] {
        let headline = record.headline
        let priority = facility.code * 8 + headline.syslogSeverity
        let time = headline.lastUpdateTime.flatMap { Timestamp(parsing: $0) } ?? Timestamp(parsing: record.receivedAt)
        var text: String
        switch syslogProtocol {
        case .rfc5424:
            let stamp = time.map { $0.writtenWith(min($0.fractionDigits, 6)).description } ?? "-"
            text =
                "<\(priority)>1 \(stamp) \(Self.header(hostname, 255)) \(Self.header(appName, 48)) - \(Self.header(Self.messageID(for: record), 32)) "
            text += "[defender@\(enterpriseNumber)"
            let id = record.kind == .incident ? "incidentId" : "alertId"
            for (name, value) in [
                (id, record.alertID), ("tenant", record.tenant), ("severity", headline.severity), ("event", record.event),
                ("kind", record.kind.rawValue),
            ] {
                text += " \(name)=\"\(Self.parameterValue(value))\""
            }
            text += "] "
        case .rfc3164:
            text = "<\(priority)>\(Self.bsdTime(time ?? Timestamp(ticks: 0))) \(Self.header(hostname, 255)) \(Self.header(appName, 32)): "
        }
        return Array(text.utf8) + body
    }

    /// MSGID: an alert's event (`created`, `updated`), an incident's after `incident-`
    /// (`incident-created`, `incident-updated`), so that a receiver can route them apart.
    static func messageID(for record: OutboxRecord) -> String {
        record.kind == .incident ? "incident-" + record.event : record.event
    }

    /// A header field: printable ASCII without spaces, at most `limit` characters, `-` when empty.
    static func header(_ value: String, _ limit: Int) -> String {
        let printable = value.unicodeScalars.prefix(limit).map { (33...126).contains($0.value) ? Character($0) : "_" }
        return printable.isEmpty ? "-" : String(printable)
    }

    /// A structured-data parameter value (RFC 5424 §6.3.3): `"`, `\` and `]` escaped with a
    /// backslash; control characters, line separators and bidirectional controls (see
    /// ``PrintableText``) as `\uXXXX`, which the RFC's reader keeps as those six characters
    /// (a backslash before anything else is not an escape) and cannot take for a literal `\u`
    /// (that is written `\\u`).
    static func parameterValue(_ value: String) -> String {
        var escaped = ""
        for scalar in value.unicodeScalars {
            if scalar == "\"" || scalar == "\\" || scalar == "]" {
                escaped.unicodeScalars.append("\\")
                escaped.unicodeScalars.append(scalar)
            } else if PrintableText.isUnsafe(scalar) {
                escaped += PrintableText.unicodeEscape(scalar)
            } else {
                escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    /// `Mmm dd hh:mm:ss` in UTC, the day padded with a space (RFC 3164 §4.1.2).
    static func bsdTime(_ time: Timestamp) -> String {
        let text = time.writtenWith(0).description  // 2026-11-05T19:51:56Z
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let month = months[Int(text.dropFirst(5).prefix(2))! - 1]
        let day = Int(text.dropFirst(8).prefix(2))!
        return "\(month) \(day < 10 ? " " : "")\(day) \(text.dropFirst(11).prefix(8))"
    }
}

/// How messages are delimited on a TCP or TLS stream (RFC 6587).
public enum SyslogFraming: String, CaseIterable, Sendable {
    /// `LEN SP MSG` (§3.4.1): any byte may appear in a message.
    case octetCounting = "octet-counting"
    /// `MSG LF` (§3.4.2), for receivers that only split lines: a line break inside a message
    /// (JSON may have them between tokens, never inside a string) becomes a space, which keeps
    /// the JSON valid and the stream in step.
    case lf

    /// `message` framed for the stream.
    public func frame(_ message: [UInt8]) -> [UInt8] {
        switch self {
        case .octetCounting:
            return Array("\(message.count) ".utf8) + message
        case .lf:
            var framed = message.map { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") ? UInt8(ascii: " ") : $0 }
            framed.append(UInt8(ascii: "\n"))
            return framed
        }
    }
}

/// Where a syslog sink sends: `udp://`, `tcp://`, `tls://` or `relp://`, a host name, an IPv4
/// address or an IPv6 address in brackets, and a port (default: 514 for UDP, 601 for TCP
/// (RFC 6587), 6514 for TLS (RFC 5425), 2514 for RELP).
public struct SyslogAddress: Sendable, Equatable, CustomStringConvertible {
    public enum Transport: String, CaseIterable, Sendable {
        case udp, tcp, tls, relp

        public var defaultPort: Int {
            switch self {
            case .udp: 514
            case .tcp: 601
            case .tls: 6514
            case .relp: 2514
            }
        }
    }

    public var transport: Transport
    /// Without brackets for IPv6.
    public var host: String
    public var port: Int

    public var description: String {
        "\(transport.rawValue)://\(host.contains(":") ? "[\(host)]" : host):\(port)"
    }

    /// The address, or why `text` is not one.
    public static func parse(_ text: String) -> Result<SyslogAddress, SyslogAddressError> {
        guard let separator = text.range(of: "://") else {
            return .failure(SyslogAddressError("\"\(text)\" has no scheme; write udp://, tcp://, tls:// or relp:// before host:port"))
        }
        let scheme = String(text[..<separator.lowerBound]).lowercased()
        guard let transport = Transport(rawValue: scheme) else {
            return .failure(SyslogAddressError("unknown scheme \"\(scheme)\"; use udp, tcp, tls or relp"))
        }
        var rest = Substring(text[separator.upperBound...])
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        let host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else {
                return .failure(SyslogAddressError("\"\(text)\": an IPv6 address needs its closing ]"))
            }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { return .failure(SyslogAddressError("\"\(text)\": only :port may follow ]")) }
                portText = after.dropFirst()
            }
            guard host.contains(":") else { return .failure(SyslogAddressError("\"\(text)\": brackets are for IPv6 addresses only")) }
        } else {
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { return .failure(SyslogAddressError("\"\(text)\": an IPv6 address goes in brackets, as tcp://[::1]:601")) }
            host = parts[0]
            portText = parts.count == 2 ? parts[1] : nil
        }
        guard !host.isEmpty else { return .failure(SyslogAddressError("\"\(text)\" has no host")) }
        guard host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-_:".contains($0)) }) else {
            return .failure(SyslogAddressError("\"\(text)\": \"\(host)\" is not a host name or an IP address"))
        }
        var port = transport.defaultPort
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number) else {
                return .failure(SyslogAddressError("\"\(text)\": the port must be a number from 1 to 65535"))
            }
            port = number
        }
        return .success(SyslogAddress(transport: transport, host: String(host), port: port))
    }
}

/// Why a syslog address cannot be used.
public struct SyslogAddressError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
