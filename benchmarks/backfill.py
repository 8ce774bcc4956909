#!/usr/bin/env python3
"""Backfill throughput: defender-sim holds N alerts spread over the last hour; one
`defender-alertd poll-once` fetches them (page_size P, evidence expanded) and delivers them to
a file sink. Prints wall time, alerts per second, API calls and the daemon's peak RSS.

Usage: benchmarks/backfill.py [BUILD_DIR] [ALERTS] [PAGE_SIZE]   (loopback only)"""
import json, os, subprocess, sys, tempfile, time, urllib.request

import bench  # beside this file

build = sys.argv[1] if len(sys.argv) > 1 else ".build/debug"
alerts = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
page = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
work = tempfile.mkdtemp(prefix="defender-alertd-bench-")
secret = "benchmark-secret"

sim = subprocess.Popen([f"{build}/defender-sim", "--port", "0", "--client-secret", secret, "--backlog", str(alerts),
                        "--backlog-span", "3600", "--rate-limit-per-minute", "100000", "--rate-limit-per-hour", "1000000"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    base = sim.stdout.readline().split()[-1]
    with open(os.open(f"{work}/secret", os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(secret + "\n")
    with open(f"{work}/bench.toml", "w") as f:
        f.write(f'''[service]
state_directory = "state"
log_level = "warning"
[[tenant]]
name = "bench"
tenant_id = "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35"
client_id = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
client_secret_file = "secret"
api_url = "{base}"
login_url = "{base}"
lookback = "2h"
page_size = {page}
[[sink]]
name = "archive"
type = "file"
path = "alerts.jsonl"
''')
    os.chmod(f"{work}/bench.toml", 0o644)
    start = time.monotonic()
    daemon = subprocess.Popen([f"{build}/defender-alertd", "poll-once", "--config", f"{work}/bench.toml"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    status, usage, rss = bench.wait_measuring(daemon.pid)
    elapsed = time.monotonic() - start
    stderr = daemon.stderr.read()
    assert os.waitstatus_to_exitcode(status) == 0, stderr
    with open(f"{work}/alerts.jsonl") as f:
        delivered = sum(1 for _ in f)
    counters = json.load(urllib.request.urlopen(f"{base}/_simulator/counters"))
    calls = sum(counters["requests"].get("alerts", {}).values())
    print(f"alerts: {alerts}, page_size: {page}, delivered: {delivered}")
    print(f"wall: {elapsed:.2f} s, {delivered / elapsed:.0f} alerts/s, alerts API calls: {calls}")
    print(f"peak RSS of defender-alertd: {rss:.0f} MiB")
finally:
    sim.terminate()
    sim.wait()
