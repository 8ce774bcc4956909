#!/usr/bin/env bash
# `make demo`: the Defender simulator with a backlog and a steady stream of alerts (some
# updates, some late), and the daemon forwarding them to stdout and a file. Ctrl-C stops both.
set -euo pipefail
bin=${1:?usage: demo.sh BUILD-DIR}
cd "$(dirname "$0")/.."
mkdir -p .demo
rm -rf .demo/state .demo/alerts.jsonl*
secret=demo-client-secret-not-real
( umask 077; printf '%s\n' "$secret" > .demo/client-secret )
chmod go-w config/demo.toml

"$bin/defender-sim" --port 8080 --client-secret "$secret" --backlog 40 --backlog-span 3600 \
    --rate 20 --update-fraction 0.25 --late-fraction 0.2 --late-seconds 20 > .demo/simulator.log 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null' EXIT
for _ in $(seq 1 100); do grep -q listening .demo/simulator.log 2>/dev/null && break; sleep 0.1; done
grep -q listening .demo/simulator.log || { echo "the simulator did not start:"; cat .demo/simulator.log; exit 1; }

"$bin/defender-alertd" check-config --config config/demo.toml
echo
echo "defender-sim on http://127.0.0.1:8080: 40 alerts in the last hour, then 20 a minute (25% updates, 20% late)."
echo "Alerts appear below as JSON (envelope format) and in .demo/alerts.jsonl. Ctrl-C stops both."
echo
"$bin/defender-alertd" run --config config/demo.toml --log-target stderr
