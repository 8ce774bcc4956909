#!/usr/bin/env bash
# Runs a command with a real systemd-journald listening on /run/systemd/journal/socket.
# When none is running (no systemd as PID 1, as in CI), one is started for the command and
# stopped afterwards; a journald that was already running is left alone.
set -uo pipefail
socket=/run/systemd/journal/socket
started=""
journald_running() { grep -qx 'systemd-journal' /proc/[0-9]*/comm 2>/dev/null; }
if [ ! -S "$socket" ] || ! journald_running; then
    journald=$(command -v systemd-journald || echo /lib/systemd/systemd-journald)
    [ -x "$journald" ] || journald=/usr/lib/systemd/systemd-journald
    "$journald" >/dev/null 2>&1 &
    started=$!
    for _ in $(seq 1 100); do [ -S "$socket" ] && break; sleep 0.1; done
    if [ ! -S "$socket" ]; then echo "with-journald: systemd-journald did not create $socket" >&2; exit 1; fi
fi
"$@"
status=$?
if [ -n "$started" ]; then kill "$started" 2>/dev/null; wait "$started" 2>/dev/null; fi
exit $status
