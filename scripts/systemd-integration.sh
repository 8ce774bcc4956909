#!/usr/bin/env bash
# The daemon under a real systemd: a Debian rootfs booted with systemd-nspawn, the shipped
# unit installed as is (DynamicUser, LoadCredential, Type=notify, WatchdogSec, the hardening),
# defender-sim on the host's loopback, alerts checked in /var/log/defender-alertd/.
# Usage: scripts/systemd-integration.sh BUILD_DIR   (needs root, debootstrap, systemd-container)
set -euo pipefail
build=$(realpath "${1:?usage: systemd-integration.sh BUILD_DIR}")
cd "$(dirname "$0")/.."
root=$(pwd)/.build-systemd/rootfs
mirror=$(grep -hm1 '^URIs' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $2}')
mirror=${mirror:-$(grep -hm1 '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}')}

if [ ! -x "$root/lib/systemd/systemd" ]; then
    rm -rf "$root"; mkdir -p "$(dirname "$root")"
    echo "systemd-integration: debootstrap bookworm into $root (about a minute)"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libsqlite3-0 bookworm "$root" "$mirror" >/dev/null
fi

fail() { echo "systemd-integration: FAILED: $*"; [ -n "${leader:-}" ] && nsenter -t "$leader" -a journalctl -u defender-alertd --no-pager -n 40 || true; exit 1; }

# The simulator on the host's loopback (the container shares the host's network).
sim_log=$(mktemp)
"$build/defender-sim" --port 0 --client-secret integration-secret --backlog 25 --backlog-span 600 > "$sim_log" 2>&1 &
sim=$!
container=""
cleanup() {
    [ -n "$container" ] && kill -TERM "$container" 2>/dev/null && wait "$container" 2>/dev/null
    kill "$sim" 2>/dev/null; wait "$sim" 2>/dev/null
    rm -f "$sim_log"
}
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q listening "$sim_log" && break; sleep 0.1; done
base=$(sed -n 's/^listening //p' "$sim_log")
[ -n "$base" ] || fail "the simulator did not start"

# The unit exactly as shipped, the configuration and the secret as the README says.
install -D -m 0644 systemd/defender-alertd.service "$root/etc/systemd/system/defender-alertd.service"
install -d -m 0755 "$root/etc/defender-alertd"
printf 'integration-secret\n' > "$root/etc/defender-alertd/client-secret"; chmod 0600 "$root/etc/defender-alertd/client-secret"
cat > "$root/etc/defender-alertd/defender-alertd.toml" <<TOML
[service]
poll_interval = "2s"
[[tenant]]
name = "contoso"
tenant_id = "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35"
client_id = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
client_secret_credential = "client-secret"
api_url = "$base"
login_url = "$base"
lookback = "1h"
[[sink]]
name = "journal"
type = "journal"
[[sink]]
name = "archive"
type = "file"
path = "/var/log/defender-alertd/alerts.jsonl"
TOML
chmod 0644 "$root/etc/defender-alertd/defender-alertd.toml"
rm -rf "$root/var/log/private/defender-alertd" "$root/var/lib/private/defender-alertd"

systemd-nspawn -q -b -D "$root" --register=no --keep-unit --console=passive \
    --bind-ro=/opt/swift --bind-ro="$build/defender-alertd:/usr/bin/defender-alertd" >/dev/null 2>&1 &
container=$!
leader=""
for _ in $(seq 1 100); do
    leader=$(pgrep -P "$container" | head -1 || true)
    [ -n "$leader" ] && nsenter -t "$leader" -a systemctl is-system-running --wait >/dev/null 2>&1 && break
    sleep 0.2
done
[ -n "$leader" ] || fail "the container did not boot"
inside() { nsenter -t "$leader" -a "$@"; }

inside systemctl start defender-alertd || fail "systemctl start"
for _ in $(seq 1 150); do
    lines=$(inside sh -c 'wc -l < /var/log/defender-alertd/alerts.jsonl' 2>/dev/null || echo 0)
    [ "$lines" -ge 25 ] && break
    sleep 0.2
done
[ "${lines:-0}" -ge 25 ] || fail "expected 25 alerts in /var/log/defender-alertd/alerts.jsonl, found ${lines:-0}"
for _ in $(seq 1 50); do
    status=$(inside systemctl show -p StatusText --value defender-alertd)
    echo "$status" | grep -q "contoso: ok" && break
    sleep 0.2
done
echo "$status" | grep -q "contoso: ok" || fail "STATUS= is \"$status\""
invocation=$(inside systemctl show -p InvocationID --value defender-alertd)
journal=$(inside journalctl --no-pager -o json _SYSTEMD_INVOCATION_ID="$invocation" MESSAGE_ID=b5d1e2c74a0f4e6c9d3a8f1b27c6e950 | wc -l)
[ "$journal" -ge 25 ] || fail "expected 25 alert entries in the journal, found $journal"
inside systemctl reload defender-alertd || fail "systemctl reload"
[ "$(inside systemctl is-active defender-alertd)" = active ] || fail "not active after reload"
uid=$(inside stat -c %u /var/lib/private/defender-alertd/state.sqlite)
[ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] || fail "state database owned by uid $uid, not a dynamic user"
mode=$(inside stat -c %a /var/lib/private/defender-alertd)
[ "$mode" = 700 ] || fail "state directory mode $mode"
secret_leaks=$(inside journalctl --no-pager _SYSTEMD_INVOCATION_ID="$invocation" | grep -c integration-secret || true)
[ "$secret_leaks" = 0 ] || fail "the client secret appears in the journal"
inside systemctl stop defender-alertd || fail "systemctl stop"
result=$(inside systemctl show -p Result --value defender-alertd)
[ "$result" = success ] || fail "stop result $result"
echo "systemd-integration: ok: Type=notify start, $lines alerts in the file sink, $journal journal entries, STATUS=\"$status\", reload, clean stop; state 0700 owned by dynamic uid $uid; no secret in the journal"
