#!/usr/bin/env python3
"""Writes scripts/symbol-order.txt: the functions of the release binary that a running daemon
executes, for the linker to lay out next to each other (lld --symbol-ordering-file).

Why: the kernel maps a program's code in 64 KiB neighbourhoods around each page it touches
(fault-around). Scattered over 30 MB of code (static Swift runtime, Foundation, NIO,
BoringSSL, GRDB), the 2 MB a daemon runs kept about 16 MB of code resident; packed together
they keep about as much as they are. A function missing from the list (new code) still
works, it is only laid out after the listed ones; a stale name is ignored.

How: `defender-alertd run` under valgrind's callgrind (it records every function executed,
not a sample) against defender-sim on loopback: start-up, a token, a backlog of alerts read
in split windows and delivered to a file and the journal, empty polls, a reload (SIGHUP) and
a clean stop (SIGTERM). Names are kept when the binary defines them, sorted (which groups
them by module). Run with `make symbol-order` (release build, real journald).

Usage: scripts/update-symbol-order.py RELEASE_BUILD_DIR [OUTPUT]"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

build = sys.argv[1]
output = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "symbol-order.txt")
SECRET = "symbol-order-secret"

work = tempfile.mkdtemp(prefix="defender-alertd-order-")
# valgrind cannot read the debug information lld writes for Swift; the symbol table is enough.
binary = os.path.join(work, "defender-alertd")
subprocess.run(["strip", "--strip-debug", "-o", binary, f"{build}/defender-alertd"], check=True)

sim = subprocess.Popen([f"{build}/defender-sim", "--port", "0", "--client-secret", SECRET, "--backlog", "3000",
                        "--backlog-span", "3600"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
line = sim.stdout.readline()
if not line.startswith("listening "):
    sys.exit(f"defender-sim did not start: {line!r}")
base = line.split()[-1]
try:
    with open(os.open(os.path.join(work, "secret"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(SECRET + "\n")
    config = os.path.join(work, "defender-alertd.toml")
    with open(config, "w") as f:
        f.write(f'''[service]
state_directory = "{work}/state"
poll_interval = "1s"
[[tenant]]
name = "order"
tenant_id = "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35"
client_id = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
client_secret_file = "secret"
api_url = "{base}"
login_url = "{base}"
lookback = "2h"
page_size = 500
[[sink]]
name = "archive"
type = "file"
path = "{work}/alerts.jsonl"
[[sink]]
name = "journal"
type = "journal"
''')
    os.chmod(config, 0o644)
    profile = os.path.join(work, "callgrind.out")
    daemon = subprocess.Popen(["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={profile}",
                               binary, "run", "--config", config],
                              cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Under callgrind the daemon runs about 50 times slower: give the backlog time to arrive.
    deadline = time.monotonic() + 300
    alerts = os.path.join(work, "alerts.jsonl")
    while time.monotonic() < deadline and daemon.poll() is None:
        if os.path.exists(alerts) and sum(1 for _ in open(alerts)) >= 3000:
            break
        time.sleep(1)
    time.sleep(15)  # empty polls
    daemon.send_signal(signal.SIGHUP)
    time.sleep(10)
    daemon.send_signal(signal.SIGTERM)
    _, errors = daemon.communicate(timeout=120)
    delivered = sum(1 for _ in open(alerts)) if os.path.exists(alerts) else 0
    if daemon.returncode != 0 or delivered < 3000:
        sys.exit(f"the daemon under callgrind exited {daemon.returncode} after {delivered} alerts:\n{errors[-3000:]}")
finally:
    sim.terminate()
    sim.wait()

executed = []
seen = set()
with open(profile, errors="replace") as f:
    for line in f:
        match = re.match(r"c?fn=\(\d+\) (\S+)", line)
        if match and match.group(1) not in seen:
            seen.add(match.group(1))
            executed.append(match.group(1))
defined = set()
for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        defined.add(parts[2])
# Sorted by name: the set is what matters (it ends up contiguous), and a sorted file changes
# only where functions come or go.
ordered = sorted(name for name in executed if name in defined)
with open(output, "w") as f:
    f.write("\n".join(ordered) + "\n")
print(f"{output}: {len(ordered)} functions executed by the daemon ({len(executed)} in all, with the shared libraries')")
