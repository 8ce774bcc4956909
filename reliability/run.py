#!/usr/bin/env python3
"""The reliability suite: the real daemon against the simulator (and a file sink), one fault
per row, and one table: the fault, what must happen, alerts sent, delivered, lost (must be 0),
duplicates, and the figure that matters for that fault.

    reliability/run.py [--quick] [--lanes 1|2] [--build DIR] [--only NAME,...] [--soak-minutes N]

--quick is the part of `make test` (small counts, short outages); without it, `make
reliability` runs the long version (200 kills, a 100,000-alert backfill, minutes-long
outages, the 30-minute soak). The rows named "group: ..." run three daemons sharing six
tenants in a PostgreSQL database of their own, on the server scripts/with-postgres.sh
starts (`scripts/with-postgres.sh reliability/run.py ...`; without it they say SKIP).
`--lanes 2` runs them in a lane of their own beside the single daemon's rows (`make test`).
Everything listens on 127.0.0.1 only. A row that cannot run here says why (SKIP) instead of
passing; the exit status is 1 if any row failed. With RELIABILITY_KEEP=1 in the environment
each row's directory (configuration, state, sink file, daemon and simulator logs; for a group
row also pollers.json: what the row did when, and each tenant's runs of requests by member)
is kept and named.
"""
import argparse
import calendar
import concurrent.futures
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

CANARY = "CANARY-reliability-secret-3c9d"
TENANT_ID = "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35"
CLIENT_ID = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def read_delivered(path, offset, ids):
    """Appends to `ids` the alert id of each complete line of the file sink `path` after
    `offset` (a 100,000-alert sink file is 300 MB: each call reads on from the last); returns
    the offset to read on from."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return offset
    complete = data.rfind(b"\n") + 1
    for line in data[:complete].splitlines():
        match = re.search(rb'"alert":\{"id":"([^"]+)"', line) or re.search(rb'"id":"([^"]+)"', line)
        if match:
            ids.append(match.group(1).decode())
    return offset + complete


def wait_for_ids(delivered, expected, timeout, pause):
    """Whether `delivered()` came to hold every id of `expected` within `timeout` seconds,
    calling `pause()` between looks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if expected <= set(delivered()):
            return True
        pause()
    return expected <= set(delivered())


class Skip(Exception):
    """The row cannot run on this machine; the message says why."""


class Run:
    """One simulator, one daemon configuration and its directory."""

    def __init__(self, build, simulator_args=(), tenant_extra="", service_extra="", directory=None, poll_interval="1s", overlap="10m"):
        self.build = build
        self.directory = directory or tempfile.mkdtemp(prefix="reliability-")
        self.owned = directory is None
        self.state = os.path.join(self.directory, "state")
        self.sink = os.path.join(self.directory, "a.jsonl")
        self.daemon = None
        self.daemon_log = os.path.join(self.directory, "daemon.log")
        with open(os.path.join(self.directory, "secret"), "w") as handle:
            handle.write(CANARY + "\n")
        os.chmod(os.path.join(self.directory, "secret"), 0o600)
        self.simulator_log = open(os.path.join(self.directory, "simulator.log"), "w")
        self.simulator = subprocess.Popen(
            [os.path.join(build, "defender-sim"), "--port", "0", "--client-secret", CANARY, *simulator_args],
            stdout=subprocess.PIPE, stderr=self.simulator_log, text=True)
        line = self.simulator.stdout.readline()
        match = re.match(r"listening (\S+)", line)
        if not match:
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.base = match.group(1)
        self.configuration = os.path.join(self.directory, "defender-alertd.toml")
        with open(self.configuration, "w") as handle:
            handle.write(f"""[service]
poll_interval = "{poll_interval}"
log_level = "info"
state_directory = "{self.state}"
{service_extra}

[[tenant]]
name = "contoso"
tenant_id = "{TENANT_ID}"
client_id = "{CLIENT_ID}"
client_secret_file = "secret"
api_url = "{self.base}"
login_url = "{self.base}"
lookback = "1d"
overlap = "{overlap}"
{tenant_extra}

[[sink]]
name = "a"
type = "file"
path = "{self.sink}"
format = "envelope"
# One file, never rotated: the driver reads every delivery from it.
max_size = "0"
""")

    # The simulator's control API.
    def control(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base}/_simulator/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def add_alerts(self, count):
        self.control("POST", "alerts", {"count": count})

    def fault(self, **fault):
        self.control("POST", "faults", fault)

    def counters(self):
        return self.control("GET", "counters")

    def sent(self):
        return {alert["id"] for alert in self.control("GET", "alerts")["value"]}

    # The daemon.
    def start(self, environment=None, prefix=()):
        log = open(self.daemon_log, "a")
        env = {"PATH": "/usr/bin:/bin", **(environment or {})}
        self.daemon = subprocess.Popen([*prefix, os.path.join(self.build, "defender-alertd"), "run", "--config", self.configuration,
                                        "--log-target", "stderr"], stdout=log, stderr=log, env=env, cwd=self.directory)
        return self.daemon

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.daemon is None or self.daemon.poll() is not None:
            return self.daemon.returncode if self.daemon else None
        self.daemon.send_signal(sig)
        try:
            return self.daemon.wait(timeout)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            return self.daemon.wait()

    def tick(self, seconds):
        """Waits, asking the simulator how many alerts it has every half second so that its
        arrivals happen on time whether or not the daemon is polling. (Not the alerts
        themselves: at tens of thousands, serving them all twice a second would take the
        simulator's whole CPU and starve the daemon's polls.)"""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.control("GET", "alerts/count")
            time.sleep(0.5)

    def log(self):
        with open(self.daemon_log, errors="replace") as handle:
            return handle.read()

    def delivered(self):
        """Every alert id the sink holds, once per line (read on from where the last call
        stopped: a 100,000-alert sink file is 300 MB)."""
        if not hasattr(self, "_ids"):
            self._ids, self._offset = [], 0
        self._offset = read_delivered(self.sink, self._offset, self._ids)
        return list(self._ids)

    def wait_delivered(self, expected, timeout):
        return wait_for_ids(self.delivered, expected, timeout, lambda: time.sleep(0.2))

    def close(self):
        self.stop(signal.SIGKILL)
        self.simulator.kill()
        self.simulator.wait()
        self.simulator_log.close()
        if self.owned and not os.environ.get("RELIABILITY_KEEP"):
            shutil.rmtree(self.directory, ignore_errors=True)
        elif self.owned:
            print(f"kept {self.directory} (RELIABILITY_KEEP)", file=sys.stderr)


def outcome(run, expected, figure, ok=True, note=""):
    delivered = run.delivered()
    unique = set(delivered)
    lost = len(expected - unique)
    leaked = CANARY in run.log()
    return {
        "sent": len(expected), "delivered": len(unique & expected), "lost": lost,
        "duplicates": len(delivered) - len(unique), "figure": figure + (" SECRET IN LOG" if leaked else ""),
        "ok": ok and lost == 0 and not leaked, "note": note,
    }


def error_lines(log):
    return [line for line in log.splitlines() if " error " in line or " critical " in line]


# ---- API faults -------------------------------------------------------------------------

def api_fault(build, quick, faults, name_of_figure, figure_of, check, count=300, tenant_extra="page_size = 100", service_extra="", timeout=90):
    """One API fault. `figure_of(counters, seconds)` is the row's figure and `check(counters,
    seconds)` its verdict: the row fails on its own figure, not only on a loss."""
    run = Run(build, tenant_extra=tenant_extra, service_extra=service_extra)
    try:
        run.add_alerts(count)
        for fault in faults:
            run.fault(**fault)
        expected = run.sent()
        run.start()
        started = time.monotonic()
        run.wait_delivered(expected, timeout)
        seconds = time.monotonic() - started
        counters = run.counters()
        run.stop()
        return outcome(run, expected, f"{name_of_figure} {figure_of(counters, seconds)}", ok=check(counters, seconds))
    finally:
        run.close()


def alerts_answered(counters, status):
    return counters["requests"].get("alerts", {}).get(str(status), 0)


def row_5xx(build, quick):
    # Every 503 injected was answered (and retried: nothing is lost).
    return api_fault(build, quick, [{"target": "alerts", "kind": "status", "status": 503, "count": 8}],
                     "503s answered:", lambda c, s: f"{alerts_answered(c, 503)}, all delivered after {s:.1f} s",
                     lambda c, s: alerts_answered(c, 503) == 8)


def inside_retry_after(c, s):
    # Requests sent once a 429 had been answered and before its Retry-After ran out (the
    # simulator's `sentInsideRetryAfter`); `callsIgnoringRetryAfter` also counts one already on
    # its way when the 429 went out.
    return f"{c['sentInsideRetryAfter']} (429s: {alerts_answered(c, 429)}, arrivals inside it: {c['callsIgnoringRetryAfter']})"


def no_call_inside_retry_after(c, s):
    return c["sentInsideRetryAfter"] == 0 and alerts_answered(c, 429) == 2


def row_429_seconds(build, quick):
    return api_fault(build, quick, [{"target": "alerts", "kind": "rate-limit", "retryAfter": 3, "count": 2}],
                     "sent inside Retry-After:", inside_retry_after, no_call_inside_retry_after)


def row_429_date(build, quick):
    return api_fault(build, quick, [{"target": "alerts", "kind": "rate-limit", "retryAfter": 3, "retryAfterDate": True, "count": 2}],
                     "sent inside Retry-After:", inside_retry_after, no_call_inside_retry_after)


def row_stall(build, quick):
    # Both stalls cut off by poll_timeout (3 s each): without it a request waits for its own
    # 120 s deadline.
    return api_fault(build, quick, [{"target": "alerts", "kind": "stall", "count": 2}], "delivered after",
                     lambda c, s: f"{s:.1f} s (poll_timeout 3s, {c['faultsInjected']} stalls)",
                     lambda c, s: c["faultsInjected"] == 2 and s < 30, service_extra='poll_timeout = "3s"')


def row_bodies(build, quick):
    # Each bad answer was served (and its page refused and read again: nothing is lost).
    return api_fault(build, quick, [{"target": "alerts", "kind": "truncated", "count": 2}, {"target": "alerts", "kind": "invalid-json", "count": 2},
                                    {"target": "alerts", "kind": "wrong-content-type", "count": 1}],
                     "bad answers retried:", lambda c, s: f"{c['faultsInjected']}, all delivered after {s:.1f} s",
                     lambda c, s: c["faultsInjected"] == 5)


def row_revoked(build, quick):
    run = Run(build, tenant_extra="page_size = 50")
    try:
        run.add_alerts(1500 if quick else 5000)
        expected = run.sent()
        run.start()
        deadline = time.monotonic() + 60
        while len(run.delivered()) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        run.control("POST", "tokens/revoke")
        # 5,000 alerts on one timestamp, 50 a page, told apart by creation time: a few hundred
        # calls at 100 a minute.
        run.wait_delivered(expected, 120 if quick else 420)
        counters = run.counters()
        run.stop()
        issued = counters["tokensIssued"]
        return outcome(run, expected, f"tokens issued: {issued} (one renewal), 401s: {counters['requests']['alerts'].get('401', 0)}",
                       ok=issued == 2)
    finally:
        run.close()


def row_token_down(build, quick):
    outage = 10 if quick else 180
    run = Run(build)
    try:
        run.add_alerts(200)
        run.fault(target="token", kind="status", status=503)
        expected = run.sent()
        run.start()
        time.sleep(outage)
        run.control("DELETE", "faults")
        back = time.monotonic()
        run.wait_delivered(expected, 200)
        seconds = time.monotonic() - back
        counters = run.counters()
        run.stop()
        failed = counters["requests"].get("token_v2", {}).get("503", 0)
        # The outage was seen, and backed off from: no tight loop against Entra ID (fewer than
        # one token request every 2 s; 180 s took 11). How soon after it ended the alerts came
        # is a figure, not a verdict (these machines are noisy).
        return outcome(run, expected, f"{outage} s outage, {failed} token requests during it, delivered {seconds:.1f} s after it ended",
                       ok=0 < failed <= outage // 2 + 5)
    finally:
        run.close()


# ---- Process faults ---------------------------------------------------------------------

def row_kills(build, quick):
    kills = 12 if quick else 200
    run = Run(build, simulator_args=["--rate", "600"])
    try:
        for _ in range(kills):
            run.start()
            run.tick(random.uniform(0.3, 2.5))
            run.stop(signal.SIGKILL)
        run.control("POST", "scenario", {"ratePerMinute": 0})
        expected = run.sent()
        run.start()
        run.wait_delivered(expected, 180)
        run.stop()
        return outcome(run, expected, f"{kills} kills at random moments, 10 alerts/s arriving")
    finally:
        run.close()


def row_sigterm_backfill(build, quick):
    count = 10_000 if quick else 100_000
    run = Run(build, simulator_args=["--backlog", str(count), "--backlog-span", "80000", "--rate-limit-per-minute", "1000000",
                                     "--rate-limit-per-hour", "1000000"],
              tenant_extra="page_size = 1000\nrate_limit_per_minute = 100")
    try:
        expected = run.sent()
        run.start()
        deadline = time.monotonic() + 120
        while len(run.delivered()) < count // 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        stopping = time.monotonic()
        status = run.stop(signal.SIGTERM)
        stop_seconds = time.monotonic() - stopping
        before = len(set(run.delivered()))
        run.start()
        run.wait_delivered(expected, 600)
        run.stop()
        # Within the units' TimeoutStopSec=30s with room to spare.
        return outcome(run, expected, f"stopped in {stop_seconds:.2f} s (exit {status}) with {before} delivered; the rest after a restart",
                       ok=status == 0 and stop_seconds < 10)
    finally:
        run.close()


def row_sighup_burst(build, quick):
    run = Run(build, tenant_extra="page_size = 100")
    try:
        run.add_alerts(2000)
        run.fault(target="alerts", kind="rate-limit", retryAfter=5, count=1)
        expected = run.sent()
        daemon = run.start()
        # The burst comes once the daemon has read the 429 (its log says so), not merely once
        # the simulator sent it: a reload in the milliseconds between cancels the request
        # before its Retry-After is seen, which is another case (see the README).
        deadline = time.monotonic() + 30
        while "rate limit reached" not in run.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(50):
            daemon.send_signal(signal.SIGHUP)
            time.sleep(0.02)
        run.wait_delivered(expected, 120)
        counters = run.counters()
        status = run.stop()
        tokens, inside = counters["tokensIssued"], counters["sentInsideRetryAfter"]
        return outcome(run, expected, f"tokens issued: {tokens}, sent inside Retry-After: {inside}, 429s: {counters['rateLimited'] + 1}",
                       ok=tokens == 1 and inside == 0 and status == 0)
    finally:
        run.close()


def row_clock_jumps(build, quick):
    if not os.path.exists(FAKETIME):
        raise Skip("libfaketime is not installed (make deps-reliability installs it)")
    run = Run(build, simulator_args=["--rate", "300"])
    try:
        offset = os.path.join(run.directory, "faketime")
        environment = {"LD_PRELOAD": FAKETIME, "FAKETIME_TIMESTAMP_FILE": offset, "FAKETIME_NO_CACHE": "1",
                       "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_DONT_RESET": "1"}

        def set_clock(value):
            with open(offset, "w") as handle:
                handle.write(value + "\n")

        # While it runs, the wall clock jumps forward (+3 h, then +26 h). A backward jump is made
        # across a restart (a machine booting with its clock hours behind, before NTP): under
        # libfaketime a backward jump stops every libdispatch timer and Task.sleep of a running
        # process, this daemon's or a 10-line program's, which a real clock change does not do.
        # Started through env(1): spawned straight from Python with libfaketime preloaded, the
        # Swift runtime saw no command-line arguments (seen here, not investigated further).
        steps = [("+0", "+3h"), ("-5h", "+26h"), ("+0", None)] if quick else [("+0", "+3h"), ("+3h", "+26h"), ("-5h", "-4h"), ("-26h", None), ("+0", None)]
        for start, jump in steps:
            set_clock(start)
            run.start(environment, prefix=["/usr/bin/env"])
            run.tick(4)
            if jump:
                set_clock(jump)
                run.tick(4)
            run.stop()
        run.control("POST", "scenario", {"ratePerMinute": 0})
        expected = run.sent()
        run.start(environment, prefix=["/usr/bin/env"])
        run.wait_delivered(expected, 120)
        run.stop()
        described = "; ".join(f"start {start}" + (f", jump to {jump}" if jump else "") for start, jump in steps)
        return outcome(run, expected, f"wall clock {described}; 5 alerts/s arriving")
    finally:
        run.close()


# ---- Storage faults ---------------------------------------------------------------------

def row_disk_full(build, quick):
    if os.geteuid() != 0:
        raise Skip("mounting a tmpfs needs root (CI runs as root)")
    directory = tempfile.mkdtemp(prefix="reliability-tmpfs-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", directory]).returncode != 0:
        raise Skip("mount -t tmpfs is not allowed here")
    run = None
    try:
        run = Run(build, simulator_args=["--rate", "300"], directory=directory)
        run.start()
        run.tick(3)
        filler = os.path.join(directory, "filler")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], stderr=subprocess.DEVNULL)
        full_for = 8 if quick else 60
        run.tick(full_for)
        os.remove(filler)
        freed = time.monotonic()
        run.control("POST", "scenario", {"ratePerMinute": 0})
        expected = run.sent()
        run.wait_delivered(expected, 120)
        seconds = time.monotonic() - freed
        log = run.log()
        status = run.stop()
        said = "No space left" in log or "disk is full" in log or "ENOSPC" in log
        return outcome(run, expected, f"disk full {full_for} s: {'clear log lines' if said else 'NOT LOGGED'}, caught up {seconds:.1f} s after space returned",
                       ok=said and status == 0)
    finally:
        if run:
            run.close()
        subprocess.run(["umount", "-l", directory])
        shutil.rmtree(directory, ignore_errors=True)


def row_fsync_eio(build, quick):
    if not shutil.which("strace"):
        raise Skip("strace is not installed (make deps-reliability installs it)")
    run = Run(build, simulator_args=["--rate", "300"])
    try:
        # Every fsync and fdatasync fails with EIO while strace is attached (to every thread of
        # the running daemon); stopping strace detaches it and the daemon goes on with a disk
        # that works again.
        daemon = run.start()
        run.tick(2)
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-p", str(daemon.pid), "-e", "trace=fsync,fdatasync",
                                   "-e", "inject=fsync,fdatasync:error=EIO"])
        run.tick(6 if quick else 60)
        tracer.send_signal(signal.SIGTERM)
        tracer.wait(30)
        run.tick(4)
        run.control("POST", "scenario", {"ratePerMinute": 0})
        expected = run.sent()
        run.wait_delivered(expected, 120)
        log = run.log()
        status = run.stop()
        errors = error_lines(log)
        said = any("Input/output error" in line or "I/O error" in line for line in errors)
        return outcome(run, expected, f"every fsync failing for {6 if quick else 60} s: {len(errors)} error lines"
                       f"{' naming the I/O error' if said else ' NOT NAMING IT'}, then caught up (exit {status})", ok=said and status == 0)
    finally:
        run.close()


def row_corrupt_database(build, quick):
    results = []
    for damage in ("truncated", "overwritten"):
        run = Run(build)
        try:
            run.add_alerts(50)
            expected = run.sent()
            run.start()
            run.wait_delivered(expected, 60)
            run.stop()
            database = os.path.join(run.state, "state.sqlite")
            size = os.path.getsize(database)
            with open(database, "r+b") as handle:
                if damage == "truncated":
                    handle.truncate(size // 2)
                else:
                    handle.seek(min(4096, size // 2))
                    handle.write(os.urandom(4096))
            daemon = run.start()
            try:
                status = daemon.wait(30)
            except subprocess.TimeoutExpired:
                status = None
            log = run.log()
            refused = status not in (None, 0) and "state" in log.lower()
            results.append((damage, status, refused, run.delivered()))
            run.stop(signal.SIGKILL)
        finally:
            run.close()
    ok = all(refused for _, _, refused, _ in results)
    figure = ", ".join(f"{damage}: {'refused, exit ' + str(status) if refused else 'NOT REFUSED'}" for damage, status, refused, _ in results)
    return {"sent": 50, "delivered": 50, "lost": 0, "duplicates": 0, "figure": figure, "ok": ok, "note": ""}


# ---- Soak -------------------------------------------------------------------------------

# The soak's samples (seconds, RSS and own memory in MB, fds, threads), kept after the run for a closer look.
SOAK_SAMPLES = ".build/reliability-soak.csv"


def row_soak(build, minutes):
    # 10 s between polls and 1 minute of overlap: at 10 alerts a second the API's 1,500 calls an
    # hour last the whole soak. (At 1 s and 10 minutes, each poll re-read 6,000 alerts, the
    # hourly budget ran out after 15 minutes, and the daemon waited, as it must, for the hour.)
    run = Run(build, simulator_args=["--rate", "600"], poll_interval="10s", overlap="1m")
    with open(SOAK_SAMPLES, "w") as handle:
        handle.write("seconds,rss_mb,anonymous_mb,fds,threads\n")
    try:
        daemon = run.start()
        samples = []
        started = time.monotonic()
        next_fault = started + 120
        while time.monotonic() - started < minutes * 60:
            run.tick(10)
            pid = daemon.pid
            with open(f"/proc/{pid}/status") as handle:
                status = handle.read()
            field = lambda name: int(re.search(name + r":\s+(\d+)", status).group(1))
            rss, anonymous = field("VmRSS") / 1024, field("RssAnon") / 1024
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            samples.append((time.monotonic() - started, anonymous, fds, field("Threads"), rss))
            with open(SOAK_SAMPLES, "a") as handle:
                handle.write(f"{samples[-1][0]:.0f},{rss:.2f},{anonymous:.2f},{fds},{samples[-1][3]}\n")
            if time.monotonic() > next_fault:
                run.fault(target="alerts", kind="status", status=503, count=3)
                run.fault(target="alerts", kind="rate-limit", retryAfter=5, count=1)
                next_fault += 120
        run.control("POST", "scenario", {"ratePerMinute": 0})
        expected = run.sent()
        run.wait_delivered(expected, 120)
        run.stop()

        def slope(index):
            # Least squares over the second half (after warm-up), per hour.
            half = samples[len(samples) // 2:]
            xs, ys = [s[0] / 3600 for s in half], [s[index] for s in half]
            mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
            return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / max(1e-9, sum((x - mean_x) ** 2 for x in xs))
        anonymous_slope, fd_slope, thread_slope, rss_slope = slope(1), slope(2), slope(3), slope(4)
        # A leak is the process's own (anonymous) memory growing; memory given back
        # (malloc_trim) is not. The rest of RSS is clean pages of the binary, read from the page
        # cache as code paths run for the first time (faults, reloads): bounded by the binary's
        # size and given back to the system whenever it needs them. Its slope is printed, not judged.
        flat = anonymous_slope < 4 and fd_slope < 2 and thread_slope < 2
        last = samples[-1]
        figure = (f"{minutes:g} min at 10 alerts/s with faults every 2 min: own memory {last[1]:.1f} MB ({anonymous_slope:+.2f} MB/h), "
                  f"RSS {last[4]:.1f} MB ({rss_slope:+.2f} MB/h), fds {last[2]} ({fd_slope:+.2f}/h), threads {last[3]} ({thread_slope:+.2f}/h)")
        return outcome(run, expected, figure, ok=flat)
    finally:
        run.close()


# ---- A group of daemons on PostgreSQL ----------------------------------------------------

GROUP_TENANTS = 6
GROUP_DAEMONS = 3
GROUP_POLL_INTERVAL = 1.0


def postgres_server(need_ctl=False):
    """The server scripts/with-postgres.sh started (its environment), or Skip."""
    url = os.environ.get("DEFENDER_TEST_POSTGRES_URL")
    if not url:
        raise Skip("no PostgreSQL server: DEFENDER_TEST_POSTGRES_URL is unset (run through scripts/with-postgres.sh, as make reliability does)")
    names = ["PASSWORD_FILE", "SUPERUSER_URL", "SUPERUSER_PASSWORD_FILE", "BIN"] + (["CTL"] if need_ctl else [])
    missing = [f"DEFENDER_TEST_POSTGRES_{name}" for name in names if not os.environ.get(f"DEFENDER_TEST_POSTGRES_{name}")]
    if missing:
        raise Skip(f"{', '.join(missing)} unset (scripts/with-postgres.sh sets them)")
    return {name.lower(): os.environ[f"DEFENDER_TEST_POSTGRES_{name}"] for name in ["URL"] + names}


def postgres_ctl(server, *arguments):
    """pg_ctl for the test server (as the user that owns it): `restart -w -m fast` and so on."""
    return subprocess.run(server["ctl"].split(" ") + list(arguments), cwd="/", stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=120)


def parse_iso8601(text):
    """Seconds since the epoch of the simulator's timestamps (`2026-11-26T08:09:19.1234567Z`)."""
    match = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z", text)
    if not match:
        raise ValueError(f"not an ISO 8601 UTC time: {text!r}")
    fields = [int(value) for value in match.groups()[:6]]
    return calendar.timegm((*fields, 0, 0, 0)) + float(match.group(7) or 0)


class GroupRun:
    """A group: six tenants (one simulator each: a simulator is one tenant), three daemons
    sharing a PostgreSQL database of the row's own, created as the test server's superuser and
    owned by alertd_test, and dropped at the end.

    The daemons' configurations are the same except each one's file sink path: on one host
    they cannot share one file (each would append to it on its own), where in production each
    host has its own sink or all share an HTTP sink. With `proxies`, each daemon reaches
    PostgreSQL through a partition_proxy.py of its own (so the port in its state_database
    differs too): cutting one proxy is a partition of that daemon's host. `member_name` is
    left unset: the default (the host name and the process id) makes a restarted daemon a
    new member of the group, as a unit restarted by systemd is."""

    def __init__(self, build, quick, rate, proxies=False, need_ctl=False):
        self.server = postgres_server(need_ctl)
        self.build = build
        self.quick = quick
        self.lease_ttl = 6 if quick else 30
        self.directory = tempfile.mkdtemp(prefix="reliability-group-")
        self.database = "reliability_" + os.urandom(6).hex()
        self.simulators, self.simulator_logs, self.proxies = [], [], []
        self.daemons = [None] * GROUP_DAEMONS
        self.killed = set()          # pids this row ended on purpose
        self.members = {}            # pid -> member name, from the simulators' pollers
        self.sinks = [os.path.join(self.directory, f"sink-{index}.jsonl") for index in range(GROUP_DAEMONS)]
        self.daemon_logs = [os.path.join(self.directory, f"daemon-{index}.log") for index in range(GROUP_DAEMONS)]
        self.offsets = [0] * GROUP_DAEMONS
        self.ids = []
        self.events = []             # (time, what the row did), kept in pollers.json
        self.created = False
        with open(self.server["password_file"]) as handle:
            self.password = handle.read().strip()
        with open(os.path.join(self.directory, "secret"), "w") as handle:
            handle.write(CANARY + "\n")
        os.chmod(os.path.join(self.directory, "secret"), 0o600)
        try:
            self.psql(f"CREATE DATABASE {self.database} OWNER alertd_test")
            self.created = True
            self.start_simulators(rate)
            target = urllib.parse.urlsplit(self.server["url"])
            addresses = [f"{target.hostname}:{target.port}"] * GROUP_DAEMONS
            if proxies:
                addresses = [f"127.0.0.1:{self.start_proxy(target.hostname, target.port)}" for _ in range(GROUP_DAEMONS)]
            self.configurations = [self.write_configuration(index, addresses[index]) for index in range(GROUP_DAEMONS)]
        except BaseException:
            self.close()
            raise

    # PostgreSQL, as its superuser: psql reads the password from a libpq password file (0600)
    # written for the one call and removed after it; never a command line or the environment.
    def psql(self, statement):
        superuser = urllib.parse.urlsplit(self.server["superuser_url"])
        with open(self.server["superuser_password_file"]) as handle:
            password = handle.read().strip()
        escape = lambda text: text.replace("\\", "\\\\").replace(":", "\\:")
        passfile = os.path.join(self.directory, "pgpass")
        descriptor = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"{escape(superuser.hostname)}:{superuser.port}:*:{escape(superuser.username)}:{escape(password)}\n")
        try:
            result = subprocess.run([os.path.join(self.server["bin"], "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                     "-h", superuser.hostname, "-p", str(superuser.port), "-U", superuser.username, "-d", "postgres",
                                     "-c", statement], env={"PATH": "/usr/bin:/bin", "PGPASSFILE": passfile, "PGCONNECT_TIMEOUT": "10"},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
        finally:
            os.remove(passfile)
        if result.returncode != 0:
            raise RuntimeError(f"psql {statement.split(' ')[0]} failed: {result.stderr.strip()[:300]}")

    def start_simulators(self, rate):
        for index in range(1, GROUP_TENANTS + 1):
            log = open(os.path.join(self.directory, f"simulator-t{index}.log"), "w")
            self.simulator_logs.append(log)
            # A seed each, so that the tenants' alert ids differ; no API limit (six tenants
            # polled every second for an hour would use up 1,500 calls an hour).
            process = subprocess.Popen(
                [os.path.join(self.build, "defender-sim"), "--port", "0", "--client-secret", CANARY, "--seed", str(index),
                 "--backlog", "20", "--backlog-span", "3600", "--rate", str(rate),
                 "--rate-limit-per-minute", "100000", "--rate-limit-per-hour", "10000000"],
                stdout=subprocess.PIPE, stderr=log, text=True)
            self.simulators.append(process)
            match = re.match(r"listening (\S+)", process.stdout.readline())
            if not match:
                raise RuntimeError(f"simulator t{index} did not start")
            process.base = match.group(1)

    def start_proxy(self, host, port):
        log = open(os.path.join(self.directory, f"proxy-{len(self.proxies)}.log"), "w")
        self.simulator_logs.append(log)
        process = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "partition_proxy.py"),
                                    "--listen-port", "0", "--target", f"{host}:{port}", "--control-port", "0"],
                                   stdout=subprocess.PIPE, stderr=log, text=True)
        self.proxies.append(process)
        ports = json.loads(process.stdout.readline())
        process.control_port = ports["control_port"]
        return ports["listen_port"]

    def proxy(self, index, command):
        """One command to daemon `index`'s proxy; its JSON answer."""
        with socket.create_connection(("127.0.0.1", self.proxies[index].control_port), timeout=10) as connection:
            connection.sendall(command.encode() + b"\n")
            answer = connection.makefile().readline()
        result = json.loads(answer)
        if not result.get("ok"):
            raise RuntimeError(f"proxy {command}: {result}")
        return result

    def write_configuration(self, index, address):
        url = f"postgresql://alertd_test@{address}/{self.database}"
        tenants = "\n".join(f"""
[[tenant]]
name = "t{number}"
tenant_id = "{TENANT_ID}"
client_id = "{CLIENT_ID}"
client_secret_file = "secret"
api_url = "{simulator.base}"
login_url = "{simulator.base}"
lookback = "1d"
# No alert arrives late here: a minute of overlap keeps each poll's re-read small.
overlap = "1m"
""" for number, simulator in enumerate(self.simulators, start=1))
        path = os.path.join(self.directory, f"defender-alertd-{index}.toml")
        with open(path, "w") as handle:
            handle.write(f"""[service]
poll_interval = "{GROUP_POLL_INTERVAL:g}s"
log_level = "info"
state_database = "{url}"
state_database_password_file = "{self.server['password_file']}"
lease_ttl = "{self.lease_ttl}s"
# member_name unset: the host name and the process id, a new member at every restart.
{tenants}
# The one difference between the members' configurations: on one host the daemons cannot
# share one file (in production each host has its own sink, or all share an HTTP sink).
[[sink]]
name = "a"
type = "file"
path = "{self.sinks[index]}"
format = "envelope"
# One file, never rotated: the driver reads every delivery from it.
max_size = "0"
""")
        return path

    # The daemons.
    def start(self, index):
        with open(self.daemon_logs[index], "a") as log:
            self.daemons[index] = subprocess.Popen(
                [os.path.join(self.build, "defender-alertd"), "run", "--config", self.configurations[index], "--log-target", "stderr"],
                stdout=log, stderr=log, env={"PATH": "/usr/bin:/bin"}, cwd=self.directory)
        self.note(f"started {self.daemons[index].pid} (daemon {index})")
        return self.daemons[index]

    def start_all(self):
        for index in range(GROUP_DAEMONS):
            self.start(index)

    def note(self, what):
        """Records what the row does now (wall clock, as the simulators' timestamps); returns the time."""
        at = time.time()
        self.events.append((at, what))
        return at

    def kill(self, index):
        daemon = self.daemons[index]
        self.killed.add(daemon.pid)
        at = self.note(f"kill -9 {daemon.pid}")
        daemon.kill()
        daemon.wait(30)
        return at, daemon.pid

    def exited(self):
        """The daemons that ended without being told to: (pid, status)."""
        return [(daemon.pid, daemon.returncode) for daemon in self.daemons
                if daemon is not None and daemon.poll() is not None and daemon.pid not in self.killed]

    def stop_all(self):
        """SIGTERM to each daemon still running; their exit statuses."""
        statuses = []
        for daemon in self.daemons:
            if daemon is None or daemon.poll() is not None:
                continue
            self.killed.add(daemon.pid)
            daemon.send_signal(signal.SIGCONT)
            daemon.send_signal(signal.SIGTERM)
            try:
                statuses.append(daemon.wait(60))
            except subprocess.TimeoutExpired:
                daemon.kill()
                statuses.append(daemon.wait())
        return statuses

    # The simulators.
    def control(self, simulator, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{simulator.base}/_simulator/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def tick(self, seconds):
        """Waits, asking each simulator how many alerts it has every half second (its
        arrivals happen on time whether or not a daemon polls it: see Run.tick)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for simulator in self.simulators:
                self.control(simulator, "GET", "alerts/count")
            time.sleep(0.5)

    def stop_arrivals(self):
        for simulator in self.simulators:
            self.control(simulator, "POST", "scenario", {"ratePerMinute": 0})

    def sent(self):
        ids = set()
        for simulator in self.simulators:
            ids |= {alert["id"] for alert in self.control(simulator, "GET", "alerts")["value"]}
        return ids

    def pollers(self):
        """Tenant -> its runs of alerts requests by one member, oldest first, each
        {member, requests, first, last} with the times in seconds since the epoch."""
        runs = {}
        for number, simulator in enumerate(self.simulators, start=1):
            runs[f"t{number}"] = [{**run, "first": parse_iso8601(run["first"]), "last": parse_iso8601(run["last"])}
                                  for run in self.control(simulator, "GET", "pollers")["runs"]]
        for tenant_runs in runs.values():
            for run in tenant_runs:
                pid = run["member"].rpartition("-")[2]
                if pid.isdigit():
                    self.members[int(pid)] = run["member"]
        return runs

    def member(self, pid):
        """The member name of the daemon with `pid` (as its requests' User-Agent gave it)."""
        if pid not in self.members:
            self.pollers()
        return self.members.get(pid, f"?-{pid}")

    def holders(self):
        """Tenant -> the member polling it now: the latest run's, once it has two requests (a
        member that polls, not one that sent a last request as it lost the tenant)."""
        return {tenant: runs[-1]["member"] for tenant, runs in self.pollers().items() if runs and runs[-1]["requests"] >= 2}

    def wait_spread(self, timeout=60):
        """Ticks until every tenant is polled and every daemon polls some."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick(1)
            holders = self.holders()
            alive = {self.member(daemon.pid) for daemon in self.daemons if daemon.poll() is None}
            if len(holders) == GROUP_TENANTS and set(holders.values()) == alive:
                return holders
        return self.holders()

    # What the sinks received.
    def delivered(self):
        """Every alert id the three sink files hold, once per line (read on from where the
        last call stopped)."""
        for index, path in enumerate(self.sinks):
            self.offsets[index] = read_delivered(path, self.offsets[index], self.ids)
        return list(self.ids)

    def wait_delivered(self, expected, timeout):
        # The simulators' clocks tick meanwhile (their alerts arrive on time).
        return wait_for_ids(self.delivered, expected, timeout, lambda: self.tick(0.5))

    def log(self):
        text = []
        for path in self.daemon_logs:
            try:
                with open(path, errors="replace") as handle:
                    text.append(handle.read())
            except FileNotFoundError:
                pass
        return "\n".join(text)

    def close(self):
        for daemon in self.daemons:
            if daemon is not None and daemon.poll() is None:
                daemon.send_signal(signal.SIGCONT)
                daemon.kill()
                daemon.wait()
        for process in self.simulators + self.proxies:
            process.kill()
            process.wait()
        for log in self.simulator_logs:
            log.close()
        if self.created:
            try:
                self.psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            except Exception as error:
                print(f"could not drop the database {self.database}: {error}", file=sys.stderr)
        if not os.environ.get("RELIABILITY_KEEP"):
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            print(f"kept {self.directory} (RELIABILITY_KEEP)", file=sys.stderr)


def double_pollers(runs_by_tenant, lease_ttl):
    """The double polls in the simulators' records: per tenant, a member X that sends again
    less than lease_ttl / 3 after its own previous request with requests of another member Y
    in between (runs X, Y, X). Each such X-Y-X is one.

    Why that catches two daemons polling one tenant: each would send every poll_interval
    (1 s here, below lease_ttl / 3), so their requests alternate (X, Y, X, Y...) a poll_interval
    apart; even one stale request of a daemon that lost the tenant, landing among the new
    holder's, makes Y, X, Y with Y's requests a poll_interval apart.

    Why a legitimate hand-over never matches: X's last request comes before Y acquires the
    lease (X's requests stop at 80 % of lease_ttl after its last renewal was sent, before the
    lease can expire, or X released it once no poll of it ran). X gets it back only after Y
    released it or Y's lease expired; Y releases a tenant in a lease round after the one that
    acquired it, and rounds are at least lease_ttl / 3 apart (a lease lapses a whole lease_ttl
    after its renewal). So a legitimate X, Y, X has X's requests at least lease_ttl / 3 apart.
    (One exception, which no row makes: a member stopping gracefully releases its leases at
    once, so the next holder may hand a tenant on sooner; the rows stop daemons gracefully only
    at the end, one after the other, and a stopped daemon never sends again.)
    Returns [(tenant, X, Y, seconds between X's requests)]."""
    found = []
    for tenant, runs in runs_by_tenant.items():
        for before, between, after in zip(runs, runs[1:], runs[2:]):
            gap = after["first"] - before["last"]
            if before["member"] == after["member"] != between["member"] and gap < lease_ttl / 3:
                found.append((tenant, before["member"], between["member"], round(gap, 2)))
    return found


def failover_times(runs_by_tenant, at, member):
    """For each tenant whose latest run before `at` was `member`'s: seconds from `at` to the
    first request by another member (None: none came)."""
    times = []
    for runs in runs_by_tenant.values():
        earlier = [index for index, run in enumerate(runs) if run["first"] < at]
        if not earlier or runs[earlier[-1]]["member"] != member:
            continue
        later = [run for run in runs[earlier[-1] + 1:] if run["member"] != member]
        times.append(later[0]["first"] - at if later else None)
    return times


def describe_failovers(times):
    measured = sorted(seconds for seconds in times if seconds is not None)
    if not measured:
        return "no failover measured"
    median = measured[len(measured) // 2] if len(measured) % 2 else (measured[len(measured) // 2 - 1] + measured[len(measured) // 2]) / 2
    missing = len(times) - len(measured)
    return f"failover median {median:.1f} s, max {measured[-1]:.1f} s over {len(measured)} tenants" + (f", {missing} NEVER TAKEN OVER" if missing else "")


def group_outcome(group, expected, figure, ok, statuses):
    """outcome(), plus what every group row checks: the database password in no log, no daemon
    ended on its own, each stopped at the end with status 0, and no double poller."""
    runs = group.pollers()
    # Kept with the logs (RELIABILITY_KEEP=1) for a closer look.
    with open(os.path.join(group.directory, "pollers.json"), "w") as handle:
        json.dump({"lease_ttl": group.lease_ttl, "events": group.events, "runs": runs}, handle, indent=1)
    doubles = double_pollers(runs, group.lease_ttl)
    exited = group.exited()
    leaked = group.password in group.log()
    figure += f"; double pollers {len(doubles)}" + (f" {doubles[:3]}" if doubles else "")
    if exited:
        figure += f"; EXITED: {exited}"
    if any(status != 0 for status in statuses):
        figure += f"; stopped with {statuses}"
    if leaked:
        figure += "; POSTGRESQL PASSWORD IN LOG"
    figure += f" (lease_ttl {group.lease_ttl}s)"
    return outcome(group, expected, figure, ok=ok and not doubles and not exited and not leaked and all(status == 0 for status in statuses))


def row_group_kills(build, quick):
    kills = 8 if quick else 100
    group = GroupRun(build, quick, rate=60)
    try:
        group.start_all()
        group.wait_spread()
        events = []
        for _ in range(kills):
            index = random.randrange(GROUP_DAEMONS)
            at, pid = group.kill(index)
            group.start(index)
            events.append((at, pid))
            # Between kills 0.2 to 1 lease_ttl: many land before the last one's tenants were
            # taken over (its member still counted alive, as it is until its row lapses).
            group.tick(random.uniform(0.2, 1.0) * group.lease_ttl)
        # Time for the last kill's tenants to be taken over, then the rest delivered.
        group.tick(2 * group.lease_ttl)
        group.stop_arrivals()
        expected = group.sent()
        group.wait_delivered(expected, 180)
        runs = group.pollers()
        times = [seconds for at, pid in events for seconds in failover_times(runs, at, group.member(pid))]
        statuses = group.stop_all()
        figure = f"{kills} kills, 6 alerts/s arriving: {describe_failovers(times)}"
        return group_outcome(group, expected, figure, ok=None not in times, statuses=statuses)
    finally:
        group.close()


def row_group_sigstop(build, quick):
    stopped_for = 15 if quick else 60
    group = GroupRun(build, quick, rate=60)
    try:
        group.start_all()
        holders = group.wait_spread()
        counts = {member: list(holders.values()).count(member) for member in set(holders.values())}
        index = max(range(GROUP_DAEMONS), key=lambda index: counts.get(group.member(group.daemons[index].pid), 0))
        daemon = group.daemons[index]
        member = group.member(daemon.pid)
        at = group.note(f"SIGSTOP {daemon.pid}")
        daemon.send_signal(signal.SIGSTOP)
        group.tick(stopped_for)
        group.note(f"SIGCONT {daemon.pid}")
        daemon.send_signal(signal.SIGCONT)
        # Once continued it rejoins and gets a share again; no request of it for a tenant
        # another member took meanwhile may land among that member's (double pollers).
        group.tick(2 * group.lease_ttl)
        group.stop_arrivals()
        expected = group.sent()
        group.wait_delivered(expected, 120)
        times = failover_times(group.pollers(), at, member)
        said = "leases lost" in open(group.daemon_logs[index], errors="replace").read()
        statuses = group.stop_all()
        # Within lease_ttl of the stop its leases lapse; a round (lease_ttl / 3) and a poll
        # later another member asks: twice lease_ttl is the bound.
        slow = [seconds for seconds in times if seconds is not None and seconds > 2 * group.lease_ttl]
        figure = (f"stopped {stopped_for} s holding {counts.get(member, 0)} tenants: {describe_failovers(times)}"
                  f"{'' if said else '; NO leases lost IN ITS LOG'}{'; SLOWER THAN 2 x lease_ttl' if slow else ''}")
        return group_outcome(group, expected, figure, ok=bool(times) and None not in times and not slow and said, statuses=statuses)
    finally:
        group.close()


def row_group_postgres_restart(build, quick):
    restarts = 1 if quick else 5
    # The short version's debug daemons share 2 cores with the rest of make test: 12 alerts/s.
    per_minute = 120 if quick else 600
    group = GroupRun(build, quick, rate=per_minute, need_ctl=True)
    try:
        group.start_all()
        group.wait_spread()
        took, caught_up = [], []
        for _ in range(restarts):
            started = time.monotonic()
            group.note("pg_ctl restart")
            result = postgres_ctl(group.server, "restart", "-w", "-m", "fast")
            if result.returncode != 0:
                raise RuntimeError(f"pg_ctl restart failed: {result.stderr.strip()[:300]}")
            took.append(time.monotonic() - started)
            # What had arrived until the server was back, delivered how long after.
            back, arrived = time.monotonic(), group.sent()
            group.wait_delivered(arrived, 120)
            caught_up.append(time.monotonic() - back)
            group.tick(group.lease_ttl)
        group.stop_arrivals()
        expected = group.sent()
        group.wait_delivered(expected, 180)
        statuses = group.stop_all()
        figure = (f"{restarts} restart{'s' if restarts > 1 else ''} (pg_ctl restart -m fast, {max(took):.1f} s at most) at {per_minute * GROUP_TENANTS // 60} alerts/s: "
                  f"what had arrived delivered {max(caught_up):.1f} s after the server was back{' at most' if restarts > 1 else ''}")
        return group_outcome(group, expected, figure, ok=True, statuses=statuses)
    finally:
        group.close()


def said_postgres_unavailable(log):
    """Whether a daemon's log told of the outage at warning level or above."""
    return any(re.search(r" (warning|error|critical) ", line) and ("PostgreSQL" in line or "leases cannot be renewed" in line)
               for line in log.splitlines())


def row_group_postgres_down(build, quick):
    down_for = 10 if quick else 60
    group = GroupRun(build, quick, rate=120, need_ctl=True)
    stopped = False
    try:
        group.start_all()
        group.wait_spread()
        group.note("pg_ctl stop")
        result = postgres_ctl(group.server, "stop", "-w", "-m", "fast")
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {result.stderr.strip()[:300]}")
        stopped = True
        group.tick(down_for)
        group.note("pg_ctl start")
        result = postgres_ctl(group.server, "start", "-w")
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.strip()[:300]}")
        stopped = False
        # What had arrived until the server was back (during the outage: polled, maybe, but
        # not admitted), delivered how long after.
        back, arrived = time.monotonic(), group.sent()
        group.wait_delivered(arrived, 180)
        caught_up = time.monotonic() - back
        group.tick(group.lease_ttl)
        group.stop_arrivals()
        expected = group.sent()
        group.wait_delivered(expected, 180)
        # The README promises the log says so (and STATUS=, /healthz): each daemon, at warning
        # level or above, naming PostgreSQL or its leases.
        said = sum(1 for path in group.daemon_logs if said_postgres_unavailable(open(path, errors="replace").read()))
        statuses = group.stop_all()
        figure = (f"down {down_for} s at 12 alerts/s: what had arrived delivered {caught_up:.1f} s after it was back; "
                  f"{said} of {GROUP_DAEMONS} daemons logged it{'' if said == GROUP_DAEMONS else ' (NOT ALL)'}")
        return group_outcome(group, expected, figure, ok=said == GROUP_DAEMONS, statuses=statuses)
    finally:
        if stopped:
            postgres_ctl(group.server, "start", "-w")
        group.close()


def row_group_proxy(build, quick):
    cuts = 3 if quick else 10
    group = GroupRun(build, quick, rate=60, proxies=True)
    try:
        group.start_all()
        group.wait_spread()
        # Short cuts of one daemon's connections at a time (reset, and new ones reset until
        # restored), shorter than a lease...
        for _ in range(cuts):
            index = random.randrange(GROUP_DAEMONS)
            group.note(f"cut daemon {index}'s connections ({group.daemons[index].pid})")
            group.proxy(index, "cut")
            group.tick(random.uniform(0.5, 3))
            group.note(f"restore daemon {index}'s")
            group.proxy(index, "restore")
            group.tick(random.uniform(0.5, 1) * group.lease_ttl)
        # ...then one daemon that holds tenants cut off without a reset (its connections hang)
        # for 2.5 lease_ttl: the others take its tenants, it polls none of them meanwhile.
        holders = group.wait_spread(30)
        counts = {member: list(holders.values()).count(member) for member in set(holders.values())}
        index = max(range(GROUP_DAEMONS), key=lambda index: counts.get(group.member(group.daemons[index].pid), 0))
        member = group.member(group.daemons[index].pid)
        at = group.note(f"blackhole daemon {index}'s connections ({group.daemons[index].pid})")
        group.proxy(index, "blackhole")
        group.tick(2.5 * group.lease_ttl)
        group.note(f"restore daemon {index}'s")
        group.proxy(index, "restore")
        group.tick(2 * group.lease_ttl)
        group.stop_arrivals()
        expected = group.sent()
        group.wait_delivered(expected, 120)
        times = failover_times(group.pollers(), at, member)
        reset = sum(group.proxy(index, "stats")["connections_cut"] for index in range(GROUP_DAEMONS))
        statuses = group.stop_all()
        slow = [seconds for seconds in times if seconds is not None and seconds > 2 * group.lease_ttl]
        figure = (f"{cuts} cuts of 0.5-3 s ({reset} connections reset), then one daemon holding {counts.get(member, 0)} tenants "
                  f"blackholed {2.5 * group.lease_ttl:g} s: {describe_failovers(times)}"
                  f"{'; SLOWER THAN 2 x lease_ttl' if slow else ''}")
        return group_outcome(group, expected, figure, ok=bool(times) and None not in times and not slow, statuses=statuses)
    finally:
        group.close()


ROWS = [
    ("5xx burst", "retried with back-off; nothing lost", row_5xx),
    ("429, Retry-After seconds", "no call before it runs out", row_429_seconds),
    ("429, Retry-After HTTP date", "no call before it runs out", row_429_date),
    ("stalled answers", "cut off by poll_timeout; next poll goes on", row_stall),
    ("truncated/invalid bodies", "page refused whole, retried", row_bodies),
    ("tokens revoked mid-poll", "one renewal, polling goes on", row_revoked),
    ("token endpoint down", "back-off, recovers by itself", row_token_down),
    ("kill -9 at random", "nothing lost, few repeats", row_kills),
    ("SIGTERM during backfill", "stops in time, resumes", row_sigterm_backfill),
    ("50 SIGHUPs in a burst", "one token, Retry-After kept", row_sighup_burst),
    ("wall clock jumps", "no gap, no stall", row_clock_jumps),
    ("disk full (tmpfs)", "pauses, logs, recovers", row_disk_full),
    ("fsync fails (EIO)", "nothing confirmed unwritten", row_fsync_eio),
    ("damaged state database", "refused, never reset", row_corrupt_database),
    ("group: kill -9 at random", "tenants taken over; nothing lost", row_group_kills),
    ("group: SIGSTOP the lease holder 60 s", "tenants taken over; no request after SIGCONT", row_group_sigstop),
    ("group: PostgreSQL restarted under load", "nothing lost, no daemon ends", row_group_postgres_restart),
    ("group: PostgreSQL down 60 s", "nothing admitted unstored; resumes", row_group_postgres_down),
    ("group: proxy cutting connections", "cut-off daemon's tenants taken over", row_group_proxy),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the short version (part of make test)")
    parser.add_argument("--build", default=".build/debug", help="directory with defender-alertd and defender-sim")
    parser.add_argument("--only", default="", help="comma-separated row names (substrings)")
    parser.add_argument("--lanes", type=int, choices=(1, 2), default=1,
                        help="2: the group's rows in a lane beside the others' (make test's short version)")
    parser.add_argument("--soak-minutes", type=float, default=30, help="length of the soak (not run with --quick)")
    arguments = parser.parse_args()
    rows = list(ROWS)
    if not arguments.quick:
        rows.append(("soak", "own memory, fds, threads flat", lambda build, quick: row_soak(build, arguments.soak_minutes)))
    if arguments.only:
        wanted = arguments.only.split(",")
        rows = [row for row in rows if any(w in row[0] for w in wanted)]
    build = os.path.abspath(arguments.build)

    def run_row(row):
        name, expected, function = row
        started = time.monotonic()
        try:
            result = function(build, arguments.quick)
        except Skip as skip:
            result = {"sent": "-", "delivered": "-", "lost": "-", "duplicates": "-", "figure": f"SKIP: {skip}", "ok": None}
        except Exception as error:  # a broken row is a failed row, with its reason
            result = {"sent": "-", "delivered": "-", "lost": "-", "duplicates": "-", "figure": f"ERROR: {error!r}", "ok": False}
        result["seconds"] = time.monotonic() - started
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[result["ok"]]
        print(f"{verdict} {name}: {result['figure']} ({result['seconds']:.0f} s)", file=sys.stderr, flush=True)
        return name, expected, result

    def run_lane(lane):
        return [run_row(row) for row in lane]

    # Two lanes side by side: the group's rows (which restart and stop their PostgreSQL
    # server, so they run one at a time) beside the single daemon's. Each row has its own
    # simulator, ports and directories; most of a row is waiting for processes and timers.
    lanes = [rows] if arguments.lanes == 1 else [[row for row in rows if not row[0].startswith("group:")],
                                                 [row for row in rows if row[0].startswith("group:")]]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(lanes)) as pool:
        finished = {name: (name, expected, result) for lane in pool.map(run_lane, lanes) for name, expected, result in lane}
    results = [finished[name] for name, _, _ in rows]
    print()
    print("| fault | expected | sent | delivered | lost | duplicates | figure | result |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, expected, result in results:
        verdict = {True: "pass", False: "**FAIL**", None: "skip"}[result["ok"]]
        print(f"| {name} | {expected} | {result['sent']} | {result['delivered']} | {result['lost']} | {result['duplicates']} | {result['figure']} | {verdict} |")
    sys.exit(1 if any(result["ok"] is False for _, _, result in results) else 0)


if __name__ == "__main__":
    main()
