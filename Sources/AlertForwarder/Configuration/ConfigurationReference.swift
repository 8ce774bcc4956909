/// The configuration reference, generated from ``ConfigurationKey/all``: the README's tables
/// (Markdown) and the `defender-alertd.toml(5)` man page (roff), so neither can drift from
/// what the loader accepts.
public enum ConfigurationReference {
    /// One Markdown table per TOML table, each under a `###` heading.
    public static func markdown() -> String {
        var text = ""
        for table in ConfigurationKey.Table.allCases {
            let keys = ConfigurationKey.all.filter { $0.table == table }
            text += "### `\(table.header)`\(table == .service ? "" : " (at least one)")\n\n"
            if table == .sink {
                text += "| key | applies to | type | default | meaning |\n| --- | --- | --- | --- | --- |\n"
            } else {
                text += "| key | type | default | meaning |\n| --- | --- | --- | --- |\n"
            }
            for key in keys {
                var cells = ["`\(key.name)`"]
                if table == .sink { cells.append(key.sinkTypes.isEmpty ? "all" : key.sinkTypes.map { "`\($0)`" }.joined(separator: ", ")) }
                cells += [key.kind.typeName, markdownDefault(key), key.meaning]
                text += "| " + cells.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n"
            }
            text += "\n"
        }
        while text.hasSuffix("\n") { text.removeLast() }
        return text
    }

    private static func markdownDefault(_ key: ConfigurationKey) -> String {
        if key.required || key.defaultValue == nil && key.defaultDescription == nil { return key.defaultText }
        if let value = key.defaultValue { return "`\(value.toml)`" }
        return key.defaultText
    }

    /// `defender-alertd.toml(5)` in the man(7) macro language.
    public static func manPage(version: String, date: String) -> String {
        var page = """
            .TH DEFENDER\\-ALERTD.TOML 5 "\(date)" "defender-alertd \(version)" "File Formats"
            .SH NAME
            defender\\-alertd.toml \\- configuration of defender\\-alertd
            .SH SYNOPSIS
            .B /etc/defender\\-alertd/defender\\-alertd.toml
            .SH DESCRIPTION
            The one configuration file of
            .BR defender\\-alertd (8),
            in TOML: a
            .B [service]
            table, one
            .B [[tenant]]
            table per Microsoft Defender for Endpoint tenant, and one
            .B [[sink]]
            table per destination of the alerts.
            .PP
            Durations are strings with a unit: "500ms", "30s", "5m", "2h", "1d", or combined ("1h30m").
            Sizes are strings such as "100MB" or "512KiB".
            Relative paths are relative to the directory of the configuration file.
            Enumerated values are case\\-insensitive.
            .PP
            Unknown keys are errors, so a typo cannot silently turn a setting off.
            .B defender\\-alertd check\\-config
            reports every problem of a file at once, each as
            .IR FILE : LINE ": " key ": " problem ,
            and exits with status 78.
            .PP
            The file holds no secret: an inline
            .B client_secret
            or
            .B private_key
            is refused.
            A secret comes from a file readable only by the daemon (mode 0600 or 0400) or from a systemd credential.
            The file itself must not be writable by group or others.

            """
        for table in ConfigurationKey.Table.allCases {
            page += ".SH \(table.header.uppercased())\n"
            for key in ConfigurationKey.all where key.table == table {
                var detail = [key.kind.typeName]
                if !key.sinkTypes.isEmpty { detail.append("sink types: " + key.sinkTypes.joined(separator: ", ")) }
                detail.append(key.required ? "required" : "default: " + plain(key.defaultText))
                page += ".TP\n.B \(roff(key.name))\n(\(roff(detail.joined(separator: "; "))))\n.br\n\(roff(plain(key.meaning)))\n"
            }
        }
        page += """
            .SH EXAMPLE
            .nf
            [service]
            poll_interval = "60s"

            [[tenant]]
            name = "contoso"
            tenant_id = "4f8e2c1a\\-7b3d\\-4e59\\-9a6c\\-2d1f0e8b7c35"
            client_id = "9c1e5a7b\\-3d2f\\-4a8e\\-b6c4\\-1f0d2e3a4b5c"
            client_secret_credential = "client\\-secret"

            [[sink]]
            name = "journal"
            type = "journal"

            [[sink]]
            name = "archive"
            type = "file"
            path = "/var/log/defender\\-alertd/alerts.jsonl"
            .fi
            .PP
            An annotated example of every key is installed as
            .IR /usr/share/doc/defender\\-alertd/examples/defender\\-alertd.toml .
            .SH FILES
            .TP
            .I /etc/defender\\-alertd/defender\\-alertd.toml
            the default configuration file
            .TP
            .I /etc/defender\\-alertd/NAME.toml
            the configuration of the template unit defender\\-alertd@NAME.service
            .SH SEE ALSO
            .BR defender\\-alertd (8),
            .BR systemd.exec (5),
            .BR systemd\\-creds (1)

            """
        return page
    }

    /// Markdown code spans as plain text.
    private static func plain(_ text: String) -> String {
        text.replacingOccurrences(of: "`", with: "")
    }

    /// Text escaped for roff: backslashes, hyphens as minus signs where they are literal, and
    /// no control character at the start of a line.
    static func roff(_ text: String) -> String {
        var escaped = text.replacingOccurrences(of: "\\", with: "\\e").replacingOccurrences(of: "-", with: "\\-")
        if escaped.hasPrefix(".") || escaped.hasPrefix("'") { escaped = "\\&" + escaped }
        return escaped
    }
}
