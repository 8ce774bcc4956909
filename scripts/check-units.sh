#!/usr/bin/env bash
# Checks the systemd units offline: `systemd-analyze verify` (syntax, references) and
# `systemd-analyze security` (exposure score at most 1.5). The units name
# /usr/bin/defender-alertd, which verify requires to exist, so they are checked as copies
# that point at the freshly built binary instead. Their Documentation= names man pages, which
# verify looks up with man(1): point MANPATH at the generated pages when they are not installed.
set -euo pipefail
binary=${1:?usage: check-units.sh PATH-TO-BUILT-BINARY}
binary=$(realpath "$binary")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sed "s|/usr/bin/defender-alertd|$binary|g" systemd/defender-alertd.service > "$work/defender-alertd.service"
sed "s|/usr/bin/defender-alertd|$binary|g" systemd/defender-alertd@.service > "$work/defender-alertd@example.service"

status=0
# The directives the daemon's contract depends on (DESIGN.md §4.4, issue #2 §5).
for unit in systemd/defender-alertd.service systemd/defender-alertd@.service; do
    for directive in '^Type=notify$' '^NotifyAccess=main$' '^WatchdogSec=' '^ExecStartPre=.* check-config ' \
        '^ExecReload=/usr/bin/defender-alertd reload --pid \$MAINPID$' '^Restart=on-failure$' '^RestartPreventExitStatus=78$' \
        '^StateDirectory=' '^ConfigurationDirectory=' '^LoadCredential=' '^DynamicUser=yes$' '^CapabilityBoundingSet=$'; do
        if ! grep -Eq "$directive" "$unit"; then
            echo "$unit: missing $directive"; status=1
        fi
    done
done
for unit in "$work/defender-alertd.service" "$work/defender-alertd@example.service"; do
    name=$(basename "$unit")
    if output=$(systemd-analyze verify "$unit" 2>&1) && [ -z "$output" ]; then
        echo "verify $name: ok"
    else
        echo "verify $name: FAILED"; echo "$output"; status=1
    fi
    if score=$(systemd-analyze security --offline=true --threshold=15 "$unit" 2>&1); then
        echo "security $name: $(echo "$score" | tail -n 1)"
    else
        echo "security $name: FAILED (exposure above 1.5)"; echo "$score"; status=1
    fi
done
exit $status
