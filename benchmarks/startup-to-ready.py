#!/usr/bin/env python3
"""Measures how long `defender-alertd run` takes from exec to READY=1 on a notify socket,
and from SIGTERM to exit. Usage: benchmarks/startup-to-ready.py [BINARY] [RUNS]"""
import os, signal, socket, statistics, subprocess, sys, tempfile, time

binary = sys.argv[1] if len(sys.argv) > 1 else ".build/debug/defender-alertd"
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20

work = tempfile.mkdtemp(prefix="defender-alertd-bench-")
secret = os.path.join(work, "secret")
with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
    f.write("benchmark-secret\n")
config = os.path.join(work, "defender-alertd.toml")
with open(config, "w") as f:
    f.write('''[service]
state_directory = "%s/state"
[[tenant]]
name = "bench"
tenant_id = "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35"
client_id = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
client_secret_file = "secret"
# A closed loopback port: the benchmark never leaves the machine.
api_url = "http://127.0.0.1:9"
login_url = "http://127.0.0.1:9"
[[sink]]
name = "journal"
type = "journal"
''' % work)
os.chmod(config, 0o644)

sock_path = os.path.join(work, "notify.sock")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sock_path)
sock.settimeout(30)

ready, stop = [], []
for _ in range(runs):
    env = {"NOTIFY_SOCKET": sock_path, "PATH": "/usr/bin:/bin"}
    start = time.monotonic()
    proc = subprocess.Popen([binary, "run", "--config", config, "--log-target", "stderr"],
                            env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    while b"READY=1" not in sock.recv(65536):
        pass
    ready.append(time.monotonic() - start)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    stop.append(time.monotonic() - start)
    assert proc.returncode == 0, proc.returncode

def summary(values):
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return "median %.1f ms, p95 %.1f ms, max %.1f ms" % (statistics.median(values) * 1000, p95 * 1000, values[-1] * 1000)

print("runs: %d, binary: %s" % (runs, binary))
print("exec -> READY=1:   " + summary(ready))
print("SIGTERM -> exit 0: " + summary(stop))
