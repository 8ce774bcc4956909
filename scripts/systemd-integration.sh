#!/usr/bin/env bash
# The Debian package under a real systemd: a Debian rootfs booted with systemd-nspawn, the
# .deb installed with dpkg (not started, not enabled), its man pages read, the service
# configured as the README says and started (DynamicUser, LoadCredential, Type=notify,
# WatchdogSec, the hardening), alerts checked in the journal and /var/log/defender-alertd/,
# then `dpkg -r` and `dpkg -P`, after which nothing of the package may be left.
# defender-sim runs on the host's loopback (the container shares the host's network).
# Usage: scripts/systemd-integration.sh DEB BUILD_DIR   (BUILD_DIR holds defender-sim; needs
# root, debootstrap, systemd-container)
#        scripts/systemd-integration.sh --rootfs   (only makes the rootfs, cached in
#        .build-systemd/: make test does it beside the build)
set -euo pipefail
[ "${1:-}" = "--rootfs" ] || deb=$(realpath "${1:?usage: systemd-integration.sh DEB BUILD_DIR}")
[ "${1:-}" = "--rootfs" ] || build=$(realpath "${2:?usage: systemd-integration.sh DEB BUILD_DIR}")
cd "$(dirname "$0")/.."
root=$(pwd)/.build-systemd/rootfs
mirror=$(grep -hm1 '^URIs' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $2}')
mirror=${mirror:-$(grep -hm1 '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}')}
# What the rootfs holds besides minbase: systemd itself, libsqlite3 and libdeflate (dependencies of the
# package that minbase lacks) and man-db (to read the man pages). A changed list rebuilds it.
include=systemd,systemd-sysv,dbus,libsqlite3-0,libdeflate0,man-db,rsyslog,rsyslog-relp

if [ ! -x "$root/lib/systemd/systemd" ] || [ "$(cat "$root/.defender-alertd-include" 2>/dev/null)" != "$include" ]; then
    rm -rf "$root"; mkdir -p "$(dirname "$root")"
    echo "systemd-integration: debootstrap bookworm into $root (about a minute)"
    debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" >/dev/null
    echo "$include" > "$root/.defender-alertd-include"
fi
[ "${1:-}" = "--rootfs" ] && { echo "systemd-integration: rootfs ready in $root"; exit 0; }

leader=""
fail() { echo "systemd-integration: FAILED: $*"; [ -n "$leader" ] && nsenter -t "$leader" -a journalctl -u defender-alertd --no-pager -n 40 || true; exit 1; }

sim_log=$(mktemp)
"$build/defender-sim" --port 0 --client-secret integration-secret --backlog 5000 --backlog-span 600 > "$sim_log" 2>&1 &
sim=$!
container=""
cleanup() {
    [ -n "$container" ] && kill -TERM "$container" 2>/dev/null && wait "$container" 2>/dev/null
    kill "$sim" 2>/dev/null; wait "$sim" 2>/dev/null
    rm -f "$sim_log" "$root/root/defender-alertd.deb"
}
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q listening "$sim_log" && break; sleep 0.1; done
base=$(sed -n 's/^listening //p' "$sim_log")
[ -n "$base" ] || fail "the simulator did not start"

cp "$deb" "$root/root/defender-alertd.deb"
systemd-nspawn -q -b -D "$root" --register=no --keep-unit --console=passive >/dev/null 2>&1 &
container=$!
for _ in $(seq 1 100); do
    leader=$(pgrep -P "$container" | head -1 || true)
    [ -n "$leader" ] && nsenter -t "$leader" -a systemctl is-system-running --wait >/dev/null 2>&1 && break
    sleep 0.2
done
[ -n "$leader" ] || fail "the container did not boot"
inside() { nsenter -t "$leader" -a "$@"; }
# Runs a counting command inside the container until it reports at least $1 (30 s at most);
# prints the last count.
count_until() {
    local want=$1 count=0; shift
    for _ in $(seq 1 150); do
        count=$(inside sh -c "$1" 2>/dev/null | tail -n 1)
        count=${count:-0}
        [ "$count" -ge "$want" ] && break
        sleep 0.2
    done
    echo "${count:-0}"
}
# A run that was cut short may have left the package behind.
inside dpkg -P defender-alertd >/dev/null 2>&1 || true

# Install: the service exists, is neither started nor enabled, and systemd knows it.
inside dpkg -i /root/defender-alertd.deb >/dev/null || fail "dpkg -i"
files=$(inside dpkg -L defender-alertd)
[ "$(inside systemctl is-active defender-alertd || true)" = inactive ] || fail "the service was started on install"
[ "$(inside systemctl is-enabled defender-alertd || true)" = disabled ] || fail "the service was enabled on install"
[ "$(inside systemctl show -p NeedDaemonReload --value defender-alertd)" = no ] || fail "no daemon-reload after install"
conf=$(inside stat -c '%a %U %G' /etc/defender-alertd/defender-alertd.toml)
[ "$conf" = "640 root defender-alertd-config" ] || fail "the configuration is \"$conf\", not 640 root defender-alertd-config"
inside man -P cat defender-alertd 2>/dev/null | grep -q "check-config" || fail "man defender-alertd"
inside man -P cat defender-alertd.toml 2>/dev/null | grep -q "poll_interval" || fail "man defender-alertd.toml"
inside test -s /usr/share/bash-completion/completions/defender-alertd || fail "no bash completion"

# journald's rate limit made strict (journald scales the burst up with free disk space and
# keeps one per priority, so the default lets 5,000 alerts through on a roomy disk): only the
# unit's LogRateLimitIntervalSec=0 lets the burst through whole. systemd hands that setting to
# journald as an extended attribute of the unit's cgroup, which exists only on the unified
# (v2) hierarchy: on a host with cgroup v1 the setting cannot act, and this check says so.
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    rate_limit="strict journald rate limit (burst 100)"
    inside mkdir -p /etc/systemd/journald.conf.d
    inside sh -c 'printf "[Journal]\nRateLimitIntervalSec=30s\nRateLimitBurst=100\n" > /etc/systemd/journald.conf.d/strict.conf'
    inside systemctl restart systemd-journald || fail "systemctl restart systemd-journald"
else
    inside rm -f /etc/systemd/journald.conf.d/strict.conf  # the rootfs is kept between runs
    inside systemctl restart systemd-journald || fail "systemctl restart systemd-journald"
    rate_limit="journald's default rate limit (NOT the strict one: this host has cgroup v1, where systemd cannot pass LogRateLimitIntervalSec= to journald)"
    echo "systemd-integration: note: $rate_limit"
fi

# A SIEM stand-in: the container's own rsyslog (a system service there) takes RELP on a
# loopback port and writes what it receives to a file.
relp_port=$((20000 + RANDOM % 20000))
metrics_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
inside sh -c "cat > /etc/rsyslog.d/defender-siem.conf" <<RSYSLOG
module(load="imrelp")
input(type="imrelp" address="127.0.0.1" port="$relp_port" ruleset="defender-siem")
template(name="defender-raw" type="string" string="%rawmsg%\n")
ruleset(name="defender-siem") { action(type="omfile" file="/var/log/defender-siem.log" template="defender-raw") }
RSYSLOG
inside rm -f /var/log/defender-siem.log  # the rootfs is kept between runs
inside systemctl restart rsyslog || fail "systemctl restart rsyslog"

# Configure as the README says: the secret as a root-only file loaded as a credential.
inside sh -c 'umask 077; printf "integration-secret\n" > /etc/defender-alertd/client-secret'
inside sh -c "cat > /etc/defender-alertd/defender-alertd.toml" <<TOML
[service]
poll_interval = "2s"
metrics_listen = "127.0.0.1:$metrics_port"
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
[[sink]]
name = "siem"
type = "syslog"
address = "relp://127.0.0.1:$relp_port"
TOML

inside systemctl start defender-alertd || fail "systemctl start"
lines=$(count_until 5000 'wc -l < /var/log/defender-alertd/alerts.jsonl')
[ "$lines" -ge 5000 ] || fail "expected 5000 alerts in /var/log/defender-alertd/alerts.jsonl, found $lines"
for _ in $(seq 1 50); do
    status=$(inside systemctl show -p StatusText --value defender-alertd)
    echo "$status" | grep -q "contoso: ok" && break
    sleep 0.2
done
echo "$status" | grep -q "contoso: ok" || fail "STATUS= is \"$status\""
# The hardened unit serves /healthz and /metrics (the container shares the host's network).
health=$(curl -s --max-time 10 "http://127.0.0.1:$metrics_port/healthz")
[ "$health" = '{"status":"ok"}' ] || fail "/healthz answered \"$health\""
archived=$(curl -s --max-time 10 "http://127.0.0.1:$metrics_port/metrics" | sed -n 's/^defender_alertd_alerts_delivered_total{sink="archive"} //p')
[ "${archived:-0}" -ge 5000 ] || fail "/metrics: defender_alertd_alerts_delivered_total{sink=\"archive\"} is \"$archived\", expected 5000"
siem=$(count_until 5000 'grep -c "alertId=" /var/log/defender-siem.log')
[ "$siem" -ge 5000 ] || fail "expected 5000 alerts at the container's rsyslog over RELP, found $siem"
invocation=$(inside systemctl show -p InvocationID --value defender-alertd)
journal=$(count_until 5000 "journalctl --no-pager -o json _SYSTEMD_INVOCATION_ID=$invocation MESSAGE_ID=b5d1e2c74a0f4e6c9d3a8f1b27c6e950 | wc -l")
[ "$journal" -eq 5000 ] || fail "expected all 5000 alert entries in the journal under $rate_limit, found $journal"
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

# Remove: the program and units go, the configuration and the state stay.
inside dpkg -r defender-alertd >/dev/null || fail "dpkg -r"
inside test ! -e /usr/bin/defender-alertd || fail "/usr/bin/defender-alertd left after dpkg -r"
inside test -e /etc/defender-alertd/defender-alertd.toml || fail "dpkg -r removed the configuration"
inside test -e /var/lib/private/defender-alertd/state.sqlite || fail "dpkg -r removed the state"
# Purge: nothing of the package is left, on disk or in systemd.
inside dpkg -P defender-alertd >/dev/null || fail "dpkg -P"
left=""
for path in $files /etc/defender-alertd /var/lib/defender-alertd /var/lib/private/defender-alertd \
    /var/log/defender-alertd /var/log/private/defender-alertd; do
    [ "$path" = /. ] && continue
    inside test -e "$path" -o -L "$path" || continue
    # A directory that another package owns too (/usr/bin, /usr/share/man/man8...) stays.
    inside dpkg -S "$path" >/dev/null 2>&1 && continue
    left="$left $path"
done
[ -z "$left" ] || fail "left after dpkg -P:$left"
inside dpkg -s defender-alertd >/dev/null 2>&1 && fail "dpkg still knows the package after purge"
[ "$(inside systemctl show -p LoadState --value defender-alertd)" = not-found ] || fail "systemd still knows the unit after purge"
echo "systemd-integration: ok: dpkg -i (not started, not enabled, config 640 root:defender-alertd-config, man pages), Type=notify start, $lines alerts in the file sink, $journal journal entries under $rate_limit, $siem at rsyslog over RELP, STATUS=\"$status\", /healthz and /metrics, reload, clean stop; state 0700 owned by dynamic uid $uid; no secret in the journal; dpkg -r kept config and state, dpkg -P left nothing"
