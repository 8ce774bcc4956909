#!/usr/bin/env bash
# `make demo`: the Defender simulator with a backlog and a steady stream of alerts (some
# updates, some late), and the daemon forwarding them to the console (one readable line per
# alert) and to .demo/alerts.jsonl (full JSON). Ctrl-C stops both.
# Usage: scripts/demo.sh BUILD-DIR [SECONDS]   with SECONDS, the daemon gets SIGINT after that
# long, as from Ctrl-C, and the script exits with the daemon's exit status. DEMO_API=graph reads
# the same alerts through the simulator's Microsoft Graph security/alerts_v2 instead.
set -euo pipefail
bin=$(realpath "${1:?usage: demo.sh BUILD-DIR [SECONDS]}")
seconds=${2:-}
api=${DEMO_API:-mde}
case "$api" in mde|graph) ;; *) echo "DEMO_API must be mde or graph, not $api" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
demo=.demo

# Everything the demo writes lives in .demo/ (ignored by git), made afresh with explicit
# modes: a umask alone does not change the mode of a file that already exists.
rm -rf "$demo"
install -d -m 0700 "$demo"
secret=demo-client-secret-not-real
install -m 0600 /dev/null "$demo/client-secret"
printf '%s\n' "$secret" > "$demo/client-secret"

# The simulator on a free loopback port (8080 may be taken), and a configuration for it.
"$bin/defender-sim" --port 0 --client-secret "$secret" --backlog 40 --backlog-span 3600 \
    --rate 20 --update-fraction 0.25 --late-fraction 0.2 --late-seconds 20 > "$demo/simulator.log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null' EXIT
for _ in $(seq 1 100); do grep -q '^listening ' "$demo/simulator.log" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^listening //p' "$demo/simulator.log")
[ -n "$base" ] || { echo "the simulator did not start:"; cat "$demo/simulator.log"; exit 1; }
install -m 0644 /dev/null "$demo/demo.toml"
metrics_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -e "s|http://127.0.0.1:8080|$base|g" -e "s|^api = \"mde\"|api = \"$api\"|" \
    -e "s|^metrics_listen = \"127.0.0.1:9464\"|metrics_listen = \"127.0.0.1:$metrics_port\"|" config/demo.toml > "$demo/demo.toml"

"$bin/defender-alertd" check-config --config "$demo/demo.toml"
echo
echo "defender-sim on $base: 40 alerts in the last hour, then 20 a minute (25% updates, 20% late),"
echo "read through $([ "$api" = graph ] && echo "Microsoft Graph security/alerts_v2 (DEMO_API=graph)" || echo "the MDE alerts API (DEMO_API=graph: through Microsoft Graph)")."
echo "Each alert appears below as one line (time, event, severity, title, device, id) and in"
echo "$demo/alerts.jsonl as the full JSON Defender returned. Ctrl-C stops both."
echo "Metrics: curl http://127.0.0.1:$metrics_port/metrics   health: curl http://127.0.0.1:$metrics_port/healthz"
echo
if [ -z "$seconds" ]; then
    "$bin/defender-alertd" run --config "$demo/demo.toml" --log-target stderr
else
    # SIGINT after $seconds, as Ctrl-C would send it; the daemon's own exit status is ours.
    timeout --preserve-status -s INT "$seconds" "$bin/defender-alertd" run --config "$demo/demo.toml" --log-target stderr
fi
