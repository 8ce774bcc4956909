#!/usr/bin/env bash
# `make demo`: runs the daemon in the foreground with config/demo.toml. Ctrl-C stops it.
# The Defender simulator and the alert pipeline arrive with their own issues; until then the
# demo shows start-up, readiness, the watchdog and a clean stop.
set -euo pipefail
binary=${1:?usage: demo.sh PATH-TO-BINARY}
cd "$(dirname "$0")/.."
mkdir -p .demo
( umask 077; printf 'demo-client-secret-not-real\n' > .demo/client-secret )
chmod go-w config/demo.toml
"$binary" check-config --config config/demo.toml
echo
echo "Starting the daemon (Ctrl-C stops it)..."
exec "$binary" run --config config/demo.toml --log-target stderr
