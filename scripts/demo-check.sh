#!/usr/bin/env bash
# The demo as a person runs it, bounded: `make demo DEMO_SECONDS=N` from the repository root,
# stopped with SIGINT after N seconds. Passes when the daemon exited 0, the console showed
# one summary line per alert, the file sink holds the same alerts as JSON envelopes, its
# /healthz answered 200 while it ran, and no log line has the level error or critical. Port 8080 is taken meanwhile. Run twice: as it is
# (the MDE API) and with DEMO_API=graph (Microsoft Graph security/alerts_v2).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${DEMO_SECONDS:-15}
out=$(mktemp); err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
fail() { echo "demo-check: FAILED: $*"; echo "--- stdout"; tail -n 30 "$out"; echo "--- stderr"; tail -n 30 "$err"; exit 1; }

# The demo must not depend on a fixed port: hold 8080 (its old port) while it runs.
python3 -c 'import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", 8080)); s.listen()
time.sleep(600)' 2>/dev/null &
blocker=$!
trap 'kill $blocker 2>/dev/null; rm -f "$out" "$err"' EXIT

for api in mde graph; do
make --no-print-directory demo DEMO_SECONDS="$seconds" DEMO_API="$api" > "$out" 2> "$err" &
demo=$!
# While it runs: the health endpoint the demo prints answers 200.
health=""
while kill -0 "$demo" 2>/dev/null; do
    port=$(sed -n 's|^Metrics: curl http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$out")
    [ -n "$port" ] && health=$(curl -s --max-time 2 "http://127.0.0.1:$port/healthz" || true)
    [ "$health" = '{"status":"ok"}' ] && break
    sleep 0.2
done
status=0
wait "$demo" || status=$?
[ "$status" = 0 ] || fail "make demo DEMO_API=$api exited $status"
[ "$health" = '{"status":"ok"}' ] || fail "the demo's /healthz answered \"$health\""

python3 - "$api" "$out" "$err" .demo/alerts.jsonl <<'PY' || fail "see above"
import json, re, sys
api = sys.argv[1]
stdout, stderr, archive = (open(p, encoding="utf-8").read().splitlines() for p in sys.argv[2:])
summary = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (created|updated) (\S+) "(?:[^"\\]|\\.)*" (\S+) (\S+)$')
console = [m for m in map(summary.match, stdout) if m]
problems = [l for l in stderr if re.match(r'^\S+ (error|critical) ', l)]
envelopes = [json.loads(l) for l in archive]
console_keys = sorted((m.group(1), m.group(4)) for m in console)
archive_keys = sorted((e["event"], e["alert"]["id"]) for e in envelopes)
print(f"demo-check ({api}): {len(console)} summary lines on the console, {len(envelopes)} alerts in .demo/alerts.jsonl, "
      f"{sum(1 for e in envelopes if e['event'] == 'updated')} of them updates")
errors = []
if len(console) < 40: errors.append(f"expected at least the 40 backlog alerts on the console, saw {len(console)}")
if console_keys != archive_keys: errors.append("the console and the file sink do not hold the same alerts")
if problems: errors.append("log lines at error or critical level:\n" + "\n".join(problems[:10]))
field = "lastUpdateDateTime" if api == "graph" else "lastUpdateTime"
if not all(field in e["alert"] for e in envelopes): errors.append(f"alerts without {field}: not read from the {api} API")
if any(m.group(3) == "-" for m in console): errors.append("a summary line without the device")
for e in errors: print("demo-check:", e)
sys.exit(1 if errors else 0)
PY
echo "demo-check: ok: make demo DEMO_API=$api ran ${seconds}s, /healthz 200, stopped by SIGINT, exit 0"
done
