#!/usr/bin/python3
"""`make bench`: defender-alertd side by side with its peers, in one run, on this machine.

Backfill: defender-sim holds N alerts (with evidence); three contestants read all of them with
page_size 1000, alternating run by run after a warm-up:
  daemon  `defender-alertd poll-once`, fresh state, a file sink (state and file fsync'd)
  python  benchmarks/naive_poller.py, Microsoft's documented sample with $top/$skip paging
  curl    one curl process fetching the same pages ($top/$skip) into a file: the I/O floor
CPU (user + sys) comes from wait4 of each process, peak RSS from its VmHWM (read every 10 ms),
API calls from the simulator's counters. Medians and ratios for each N.

Idle: the daemon (`run`, one tenant, no alerts, polling as fast as Defender's 100 calls a
minute allow) until it made --idle-polls polls: RSS then, RSS growth, CPU per empty poll.
Scale: --scale-sizes tenants in one daemon (1,000, 3,000, 10,000), 60 s interval, no alerts, then
the largest with --scale-trickle alerts added one by one; each measured for --scale-seconds once
every first poll is done: CPU, RSS, polls and token requests a second (tokens live 120 s, so
renewals fall in the window), connections to the API, how late polls started (the daemon's
histogram), bytes written to disk; with alerts, that every tenant delivered each once. Written
between the README's `bench-scale` markers, with a plot (`--skip` everything else: `make
bench-scale`).

Orders: the daemon's API calls per full page of a backfill (--order-sizes alerts, page_size
1000) for each order of results the simulator offers (creation, oldest-first, newest-first,
shuffled: the APIs promise none), through MDE's /api/alerts and Graph's alerts_v2.

PostgreSQL (when run through scripts/with-postgres.sh, as `make bench` does): the same backfill
by `defender-alertd run` on the embedded state and on PostgreSQL, alternating (the daemon's CPU,
the server's CPU, wall, alerts a second), then the room the state takes per 1,000 alerts (from
`state show`); and --group-tenants tenants over 1, 2 and 3 daemons of a group (CPU and RSS per
daemon, how the tenants spread).

The tables and the plot go into README.md between its `bench:begin` and `bench:end` markers,
with the date and the commit (`--readme`; --smoke writes a copy under --out instead).

Everything runs on loopback. Usage (release build):
  benchmarks/bench.py [--build .build-release/release] [--sizes 1000,10000,100000] [--runs 5]
                      [--idle-polls 1000] [--scale-sizes 1000,3000,10000] [--scale-seconds 60] [--order-sizes 20000]
                      [--out DIR] [--readme README.md]
`--smoke` runs tiny sizes only (seconds), to check the harness itself."""
import argparse
import collections
import contextlib
import datetime
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = "benchmark-secret"
TENANT = "4f8e2c1a-7b3d-4e59-9a6c-2d1f0e8b7c35"
CLIENT = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
PAGE = 1000
ORDERS = ("creation", "oldest-first", "newest-first", "shuffled")
# What the counters call each API's alerts requests.
ENDPOINTS = {"mde": "alerts", "graph": "graph_alerts"}
# The goal of calls per full page, in every order (issue 23).
CALLS_PER_PAGE_GOAL = 1.3


def start_simulator(build, backlog, extra=()):
    sim = subprocess.Popen([f"{build}/defender-sim", "--port", "0", "--client-secret", SECRET, "--backlog", str(backlog),
                            "--backlog-span", "86400", "--rate-limit-per-minute", "1000000",
                            "--rate-limit-per-hour", "100000000", *extra],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = sim.stdout.readline()
    if not line.startswith("listening "):
        sim.kill()
        sys.exit(f"defender-sim did not start: {line!r}")
    return sim, line.split()[-1]


def alerts_calls(base, api="mde"):
    counters = json.load(urllib.request.urlopen(f"{base}/_simulator/counters"))
    return sum(counters["requests"].get(ENDPOINTS[api], {}).values())


def peak_rss(pid):
    """A running process's peak resident set (`VmHWM`, MiB); None once it has ended.

    Not wait4's `ru_maxrss`: Linux counts in it the memory the parent had when it forked the
    child (the exec keeps the larger of the two), so a child of this harness seemed as large as
    the harness itself: after it had read a 300 MiB sink file, every daemon measured 318 MiB."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def wait_measuring(pid):
    """Waits for `pid` to end, reading its peak RSS every 10 ms meanwhile (the last reading
    comes at most 10 ms before the end); returns (status, rusage, peak RSS in MiB)."""
    peak = 0.0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage, peak
        peak = max(peak, peak_rss(pid) or 0.0)
        time.sleep(0.01)


def measure(argv, cwd, base, env=None, api="mde"):
    """Runs a process to its end; returns CPU seconds, wall seconds, peak RSS (MiB), API calls."""
    before = alerts_calls(base, api)
    start = time.monotonic()
    process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    status, usage, rss = wait_measuring(process.pid)
    wall = time.monotonic() - start
    stderr = process.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv[0]} failed ({os.waitstatus_to_exitcode(status)}): {stderr[-2000:]}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "wall": wall, "rss": rss, "calls": alerts_calls(base, api) - before}


def write_secret(work):
    path = os.path.join(work, "secret")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(SECRET + "\n")
    return path


def write_config(work, base, tenants=1, interval="60s", lookback="2d", sink=True, api="mde"):
    lines = ['[service]', 'state_directory = "state"', 'log_level = "warning"', f'poll_interval = "{interval}"']
    for index in range(tenants):
        tenant_id = TENANT if tenants == 1 else f"t{index}.bench.example"
        lines += ['[[tenant]]', f'name = "bench{index}"', f'tenant_id = "{tenant_id}"', f'client_id = "{CLIENT}"',
                  'client_secret_file = "secret"', f'api_url = "{base}"', f'login_url = "{base}"',
                  f'lookback = "{lookback}"', f'page_size = {PAGE}', f'api = "{api}"']
    # One file, never rotated: the alerts delivered are counted by its lines.
    lines += ['[[sink]]', 'name = "archive"', 'type = "file"', 'path = "alerts.jsonl"', 'max_size = "0"']
    path = os.path.join(work, "bench.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o644)
    return path


def contestants(build, base, work, alerts):
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2 * 86400))
    config = write_config(work, base)
    secret = write_secret(work)
    pages = alerts // PAGE + 1
    with open(os.path.join(work, "curl.conf"), "w") as f:
        for page in range(pages):
            f.write(f'url = "{base}/api/alerts?$filter=lastUpdateTime%20ge%20{since}&$top={PAGE}&$skip={page * PAGE}'
                    f'&$expand=evidence"\noutput = "curl-page-{page}.json"\n')
    token_form = f"resource=https://api.securitycenter.microsoft.com&client_id={CLIENT}&client_secret={SECRET}&grant_type=client_credentials"
    curl = ("set -e; t=$(curl -sf -d '" + token_form + f"' {base}/{TENANT}/oauth2/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/'); "
            "curl -sf -H \"Authorization: Bearer $t\" -H 'Accept: application/json' --compressed -K curl.conf")

    def fresh():
        shutil.rmtree(os.path.join(work, "state"), ignore_errors=True)
        for name in os.listdir(work):
            if name.startswith(("alerts.jsonl", "curl-page-", "python.jsonl")):
                os.remove(os.path.join(work, name))

    return {
        "daemon": (fresh, [f"{build}/defender-alertd", "poll-once", "--config", config]),
        "python": (fresh, [sys.executable, os.path.join(HERE, "naive_poller.py"), base, base, TENANT, CLIENT, secret, since,
                           "python.jsonl", str(PAGE)]),
        "curl": (fresh, ["/bin/sh", "-c", curl]),
    }


def backfill(build, sizes, runs):
    results = {}
    for alerts in sizes:
        sim, base = start_simulator(build, alerts)
        work = tempfile.mkdtemp(prefix="defender-alertd-bench-")
        try:
            table = contestants(build, base, work, alerts)
            samples = {name: [] for name in table}
            order = list(table)
            for round in range(runs + 1):  # round 0 is the warm-up
                for name in order:
                    prepare, argv = table[name]
                    prepare()
                    sample = measure(argv, work, base)
                    if round > 0:
                        samples[name].append(sample)
                order = order[1:] + order[:1]  # alternate who goes first
            results[alerts] = {name: {key: statistics.median(s[key] for s in runs_) for key in runs_[0]}
                               for name, runs_ in samples.items()}
        finally:
            sim.terminate()
            sim.wait()
            shutil.rmtree(work, ignore_errors=True)
        report_backfill(alerts, results[alerts], runs)
    return results


def report_backfill(alerts, medians, runs):
    daemon, python, curl = medians["daemon"], medians["python"], medians["curl"]
    print(f"\nbackfill of {alerts:,} alerts with evidence, page_size {PAGE}: medians of {runs} alternating runs")
    print(f"| {'':10} | {'daemon':>8} | {'python':>8} | {'curl':>8} | {'daemon/python':>13} | {'daemon/curl':>11} |")
    for key, unit in (("cpu", "s"), ("wall", "s"), ("rss", "MiB"), ("calls", "")):
        row = f"| {key + (' ' + unit if unit else ''):10} | {daemon[key]:8.2f} | {python[key]:8.2f} | {curl[key]:8.2f} |"
        row += f" {daemon[key] / python[key] if python[key] else float('nan'):12.2f}x | {daemon[key] / curl[key] if curl[key] else float('nan'):10.2f}x |"
        print(row)


Sample = collections.namedtuple("Sample", "cpu rss threads anon")


def proc_sample(pid):
    """CPU seconds, RSS and its anonymous part (MiB), threads of a running process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    return Sample(cpu, int(status["VmRSS"].split()[0]) / 1024, int(status["Threads"]), int(status["RssAnon"].split()[0]) / 1024)


@contextlib.contextmanager
def running_daemon(build, tenants=1, interval="60s", simulator_arguments=(), sim_build=None, service=()):
    """A simulator with no alerts and a daemon (`run`) polling it; yields (daemon, base URL),
    the daemon's working directory in `daemon.work`. `sim_build`: where defender-sim is, when
    not beside the daemon; `service`: more lines of its `[service]` table."""
    sim, base = start_simulator(sim_build or build, 0, simulator_arguments)
    work = tempfile.mkdtemp(prefix="defender-alertd-run-")
    try:
        write_secret(work)
        config = write_config(work, base, tenants=tenants, interval=interval, lookback="1h")
        if service:
            with open(config) as handle:
                text = handle.read().replace("[service]\n", "[service]\n" + "\n".join(service) + "\n", 1)
            with open(config, "w") as handle:
                handle.write(text)
        daemon = subprocess.Popen([f"{build}/defender-alertd", "run", "--config", config, "--log-target", "stderr"],
                                  cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemon.work = work
        try:
            yield daemon, base
        finally:
            daemon.terminate()
            daemon.wait()
    finally:
        sim.terminate()
        sim.wait()
        shutil.rmtree(work, ignore_errors=True)


def idle(build, polls):
    # Past 1,500 calls an hour the daemon's own budget (Defender's limit) slows polling down.
    if polls > 1400:
        sys.exit("--idle-polls at most 1400: the daemon keeps Defender's limit of 1,500 calls an hour")
    with running_daemon(build, interval="600ms") as (daemon, base):
        def wait_for(calls):
            while alerts_calls(base) < calls:
                if daemon.poll() is not None:
                    sys.exit("the daemon stopped during the idle benchmark")
                time.sleep(0.2)
        wait_for(10)
        first = proc_sample(daemon.pid)
        start_calls = alerts_calls(base)
        wait_for(start_calls + polls // 2)
        middle = proc_sample(daemon.pid)
        wait_for(start_calls + polls)
        last = proc_sample(daemon.pid)
        made = alerts_calls(base) - start_calls
    result = {"polls": made, "cpu_ms_per_poll": (last.cpu - first.cpu) * 1000 / made, "rss_mib": last.rss,
              "rss_after_10_mib": first.rss, "rss_half_mib": middle.rss, "threads": last.threads,
              "anon_after_10_mib": first.anon, "anon_half_mib": middle.anon, "anon_mib": last.anon}
    print(f"\nidle: one tenant, no alerts, {result['polls']} empty polls (600 ms apart: Defender's 100 calls a minute)")
    print(f"  CPU per empty poll: {result['cpu_ms_per_poll']:.2f} ms")
    print(f"  RSS after 10 polls {result['rss_after_10_mib']:.1f} MiB, after {polls // 2} {result['rss_half_mib']:.1f} MiB, "
          f"after {polls} {result['rss_mib']:.1f} MiB; {result['threads']} threads")
    print(f"  of which the process's own (anonymous) memory: {result['anon_after_10_mib']:.1f}, {result['anon_half_mib']:.1f}, "
          f"{result['anon_mib']:.1f} MiB; the rest are clean pages of the binary and libraries, mapped from the page cache")
    return result


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def daemon_metrics(port):
    """The daemon's /metrics as {name{labels}: value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and not line.startswith("#")}


def connections_to(port):
    """Local ports of the established TCP connections to 127.0.0.1:`port`."""
    listed = subprocess.run(["ss", "-tnH", "state", "established", f"( dport = :{port} )"], capture_output=True, text=True).stdout
    return {line.split()[2].rsplit(":", 1)[1] for line in listed.splitlines() if line.strip()}


def written_bytes(pid):
    with open(f"/proc/{pid}/io") as handle:
        return int(dict(line.split(": ") for line in handle.read().splitlines())["write_bytes"])


def scale_run(build, tenants, seconds, trickle=0, token_lifetime=120, interval=60):
    """`tenants` tenants in one daemon (`interval` s, 60 by default, tokens living `token_lifetime` s, so that
    they are renewed in the window), once every first poll is done: CPU, RSS, how late polls
    started (the daemon's histogram), token requests and polls per second, connections to
    the API, bytes written to disk. `trickle`: alerts added one at a time over the window
    (every tenant sees each: the simulator has one tenant answering to every domain); after
    it, every tenant must have delivered each of them once."""
    domains = [arg for index in range(tenants) for arg in ("--tenant-domain", f"t{index}.bench.example")]
    metrics_port = free_port()
    with running_daemon(build, tenants=tenants, interval=f"{interval}s", simulator_arguments=[*domains, "--token-lifetime", str(token_lifetime)],
                        service=[f'metrics_listen = "127.0.0.1:{metrics_port}"']) as (daemon, base):
        api_port = int(base.rsplit(":", 1)[1])
        def counters():
            requests = json.load(urllib.request.urlopen(f"{base}/_simulator/counters"))["requests"]
            return sum(requests.get("alerts", {}).values()), sum(sum(requests.get(key, {}).values()) for key in ("token", "token_v2"))
        deadline = time.monotonic() + 240
        while counters()[0] < tenants:
            if daemon.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"scale {tenants}: the first polls did not end ({counters()[0]} of {tenants})")
            time.sleep(1)
        time.sleep(5)
        first, start = proc_sample(daemon.pid), time.monotonic()
        written0, (polls0, tokens0) = written_bytes(daemon.pid), counters()
        per_second, ports, peak, added, previous = [], set(), 0.0, [], (polls0, tokens0)
        while time.monotonic() - start < seconds:
            if daemon.poll() is not None:
                sys.exit(f"scale {tenants}: the daemon stopped")
            time.sleep(1)
            now = counters()
            per_second.append((now[0] - previous[0], now[1] - previous[1]))
            previous = now
            ports |= connections_to(api_port)
            peak = max(peak, proc_sample(daemon.pid).rss)
            if trickle and len(added) < trickle and time.monotonic() - start > (len(added) + 0.5) * seconds / trickle:
                request = urllib.request.Request(f"{base}/_simulator/alerts", data=b'{"count": 1}', method="POST",
                                                 headers={"Content-Type": "application/json"})
                added += json.load(urllib.request.urlopen(request)).get("ids", [None])
        last, elapsed = proc_sample(daemon.pid), time.monotonic() - start
        written = written_bytes(daemon.pid) - written0
        polls, tokens = previous[0] - polls0, previous[1] - tokens0
        metrics = daemon_metrics(metrics_port)
        delivered = {}
        if trickle:
            def deliveries():
                counts = {}
                for line in open(os.path.join(daemon.work, "alerts.jsonl"), "rb"):
                    identifier = json.loads(line).get("id")
                    counts[identifier] = counts.get(identifier, 0) + 1
                return counts
            # Until every tenant delivered each alert added (the last reaches every tenant's
            # next poll: at most one more interval), read again every half second; then a
            # second more, for a duplicate to show.
            deadline = time.monotonic() + interval + 15
            while any(deliveries().get(a, 0) < tenants for a in added) and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(1)
            delivered = deliveries()
        rows = state_rows(os.path.join(daemon.work, "state", "state.sqlite"))
    delay = {float(key.split('le="')[1].split('"')[0]): value for key, value in metrics.items()
             if key.startswith("defender_alertd_poll_start_delay_seconds_bucket")}
    started = metrics.get("defender_alertd_poll_start_delay_seconds_count", 0)
    result = {"tenants": tenants, "seconds": elapsed, "cpu_percent": (last.cpu - first.cpu) * 100 / elapsed,
              "cpu_ms_per_poll": (last.cpu - first.cpu) * 1000 / max(polls, 1), "rss_mib": last.rss, "peak_rss_mib": max(peak, last.rss),
              "anon_mib": last.anon, "threads": last.threads, "polls": polls, "token_requests": tokens,
              "most_polls_in_a_second": max(p for p, _ in per_second), "most_tokens_in_a_second": max(t for _, t in per_second),
              "connections": len(ports), "written_bytes": written, "polls_started": started,
              "started_within_1s": delay.get(1.0, 0) / max(started, 1), "started_within_5s": delay.get(5.0, 0) / max(started, 1),
              "trickle": trickle, "alerts_added": len(added), "deliveries": sum(delivered.values()),
              "state_rows": rows, "state_rows_per_tenant": sum(rows.values()) / tenants,
              "every_tenant_each_alert_once": bool(added) and all(delivered.get(a) == tenants for a in added) and len(delivered) == len(added)}
    print(f"\nscale: {tenants} tenants{f', {len(added)} alerts added' if trickle else ''}, {elapsed:.0f} s: CPU {result['cpu_percent']:.2f} % "
          f"of one core ({result['cpu_ms_per_poll']:.2f} ms a poll), RSS {last.rss:.1f} MiB (peak {result['peak_rss_mib']:.1f}), "
          f"{polls} polls (at most {result['most_polls_in_a_second']} in a second), {tokens} token requests (at most "
          f"{result['most_tokens_in_a_second']} in a second), {len(ports)} connections, {written} bytes written; polls started "
          f"within 1 s {result['started_within_1s']:.1%}, within 5 s {result['started_within_5s']:.1%}"
          + (f"; {result['deliveries']} deliveries, each tenant each alert once: {result['every_tenant_each_alert_once']}" if trickle else ""))
    return result


def state_rows(path):
    """Rows of each table of the embedded state (read beside the running daemon: WAL)."""
    import sqlite3
    database = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [name for (name,) in database.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {table: database.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}
    finally:
        database.close()


def scale(build, sizes, seconds, trickle, interval=60):
    """The scale runs: each size with no alerts, then the largest with a trickle."""
    runs = [scale_run(build, tenants, seconds, interval=interval) for tenants in sizes]
    if trickle:
        runs.append(scale_run(build, sizes[-1], seconds, trickle=trickle, interval=interval))
    return runs


def scale_table(runs):
    lines = ["| tenants | alerts added | CPU (% of one core) | CPU a poll | RSS (peak) | polls | most polls in 1 s | token requests "
             "(most in 1 s) | connections to the API | started ≤ 1 s late (≤ 5 s) | written to disk | state rows a tenant |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        added = f"{run['alerts_added']} ({run['deliveries']:,} deliveries, {'each once' if run['every_tenant_each_alert_once'] else 'NOT each once'})" \
            if run["trickle"] else "none"
        lines.append(f"| {run['tenants']:,} | {added} | {run['cpu_percent']:.2f} % | {run['cpu_ms_per_poll']:.2f} ms | {run['rss_mib']:.1f} MiB "
                     f"({run['peak_rss_mib']:.1f}) | {run['polls']:,} | {run['most_polls_in_a_second']} | {run['token_requests']:,} "
                     f"({run['most_tokens_in_a_second']}) | {run['connections']} | {run['started_within_1s']:.1%} ({run['started_within_5s']:.1%}) "
                     f"| {run['written_bytes'] / 1024:,.0f} KiB | {run['state_rows_per_tenant']:.1f} |")
    return lines


def plot_scale(runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    empty = [run for run in runs if not run["trickle"]]
    sizes = [run["tenants"] for run in empty]
    figure, (cpu, rss) = plt.subplots(1, 2, figsize=(11, 4.2))
    cpu.plot(sizes, [run["cpu_percent"] for run in empty], "o-", label="no alerts")
    rss.plot(sizes, [run["rss_mib"] for run in empty], "o-", label="no alerts")
    for run in runs:
        if run["trickle"]:
            cpu.plot([run["tenants"]], [run["cpu_percent"]], "s", label=f"{run['alerts_added']} alerts to every tenant")
            rss.plot([run["tenants"]], [run["rss_mib"]], "s", label=f"{run['alerts_added']} alerts to every tenant")
    cpu.axhline(10, linestyle=":", color="grey", label="goal: 10 %")
    rss.axhline(150, linestyle=":", color="grey", label="goal: 150 MiB")
    for axis, label in ((cpu, "CPU (% of one core)"), (rss, "RSS (MiB)")):
        axis.set_xlabel("tenants in one daemon (60 s interval)")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle(f"scale: one daemon, release build ({os.uname().machine}, {os.cpu_count()} cores)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"\nplot: {path}")


def replace_block(path, name, lines):
    """Replaces what is between the README's `name` markers (`<!-- name:begin ... -->` and
    `<!-- name:end -->`) with `lines`."""
    begin = f"<!-- {name}:begin (written by benchmarks/bench.py; do not edit) -->"
    end = f"<!-- {name}:end -->"
    with open(path) as handle:
        text = handle.read()
    if begin not in text or end not in text:
        sys.exit(f"{path} has no {begin} ... {end} markers")
    block = "\n".join([begin, "", *lines, end])
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, count=1, flags=re.S)
    with open(path, "w") as handle:
        handle.write(text)


def write_scale_readme(path, runs, plot_path, started, measured, seconds):
    """Replaces what is between the README's bench-scale markers with this run's table."""
    machine = f"{os.uname().machine}, {os.cpu_count()} cores, Linux {os.uname().release}"
    lines = [f"Run of {started:%Y-%m-%d, %H:%M} UTC at commit {measured} ({machine}); each row {seconds} s measured once "
             f"every tenant's first poll was done, tokens living 120 s (renewed in the window):", ""] + scale_table(runs) + [""]
    empty = [run for run in runs if not run["trickle"]]
    if len(empty) > 1:
        small, large = empty[0], empty[-1]
        growth = (large["rss_mib"] - small["rss_mib"]) * 1024 / (large["tenants"] - small["tenants"])
        cpu = (large["cpu_percent"] - small["cpu_percent"]) / (large["tenants"] - small["tenants"]) * 1000
        lines += [f"Each tenant more costs {growth:.1f} KiB of RSS and {cpu:.3f} % of a core per 1,000 tenants "
                  f"(from {small['tenants']:,} to {large['tenants']:,}).", ""]
    for run in runs:
        lines += [f"State rows with {run['tenants']:,} tenants{', alerts added' if run['trickle'] else ''}: "
                  + ", ".join(f"{table} {count:,}" for table, count in sorted(run["state_rows"].items()) if count) + ".", ""]
    if plot_path:
        lines += [f"![CPU and RSS against the number of tenants]({plot_path})", ""]
    replace_block(path, "bench-scale", lines)


def orders(build, sizes):
    """API calls per full page of a backfill, for each order of results and each API: one
    `poll-once` each (fresh state) against a simulator answering in that order."""
    results = {}
    for api in ("mde", "graph"):
        for alerts in sizes:
            for order in ORDERS:
                sim, base = start_simulator(build, alerts, ["--result-order", order])
                work = tempfile.mkdtemp(prefix="defender-alertd-bench-order-")
                try:
                    write_secret(work)
                    config = write_config(work, base, api=api)
                    sample = measure([f"{build}/defender-alertd", "poll-once", "--config", config], work, base, api=api)
                    delivered = sum(1 for _ in open(os.path.join(work, "alerts.jsonl"), "rb"))
                    if delivered < alerts:
                        sys.exit(f"orders: {api} {order}: {delivered} of {alerts} alerts delivered")
                    full_pages = alerts / PAGE
                    results.setdefault(api, {}).setdefault(alerts, {})[order] = {
                        "calls": sample["calls"], "calls_per_full_page": sample["calls"] / full_pages, "wall": sample["wall"]}
                finally:
                    sim.terminate()
                    sim.wait()
                    shutil.rmtree(work, ignore_errors=True)
    print(f"\nAPI calls per full page (page_size {PAGE}), by order of results; goal at most {CALLS_PER_PAGE_GOAL}")
    for line in orders_table(results):
        print(line)
    return results


def orders_table(results):
    sizes = sorted({alerts for by_size in results.values() for alerts in by_size})
    lines = ["| API | alerts | " + " | ".join(ORDERS) + " |", "| --- | --- | " + " | ".join("---" for _ in ORDERS) + " |"]
    for api in ("mde", "graph"):
        for alerts in sizes:
            row = results.get(api, {}).get(alerts)
            if not row:
                continue
            cells = []
            for order in ORDERS:
                figure = row[order]["calls_per_full_page"]
                mark = "" if figure <= CALLS_PER_PAGE_GOAL else " **over the goal**"
                cells.append(f"{figure:.2f} ({row[order]['calls']} calls){mark}")
            lines.append(f"| {'MDE' if api == 'mde' else 'Graph'} | {alerts:,} | " + " | ".join(cells) + " |")
    return lines


def backfill_table(results):
    """The side-by-side table in Markdown."""
    lines = ["| alerts | | daemon | Python | curl | daemon / Python | daemon / curl |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for alerts in sorted(results):
        medians = results[alerts]
        daemon, python, curl = medians["daemon"], medians["python"], medians["curl"]
        ratio = lambda a, b: f"{a / b:.2f}×" if b else ""
        for index, (key, label, unit, digits) in enumerate((("cpu", "CPU", " s", 2), ("wall", "wall", " s", 2), ("rss", "peak RSS", " MiB", 1),
                                                            ("calls", "API calls", "", 0))):
            first = f"{alerts:,}" if index == 0 else ""
            values = [f"{m[key]:.{digits}f}{unit}" for m in (daemon, python, curl)]
            to_curl = ratio(daemon[key], curl[key]) if key in ("cpu", "wall") else ""
            lines.append(f"| {first} | {label} | {' | '.join(values)} | {ratio(daemon[key], python[key])} | {to_curl} |")
    return lines


# ---- PostgreSQL -------------------------------------------------------------------------

class Postgres:
    """The server scripts/with-postgres.sh started: a database of the bench's own, made again
    for each run, the password from its file (never on a command line)."""

    def __init__(self, work):
        self.url = os.environ["DEFENDER_TEST_POSTGRES_URL"]
        self.password_file = os.environ["DEFENDER_TEST_POSTGRES_PASSWORD_FILE"]
        self.psql = os.path.join(os.environ["DEFENDER_TEST_POSTGRES_BIN"], "psql")
        superuser = urllib.parse.urlsplit(os.environ["DEFENDER_TEST_POSTGRES_SUPERUSER_URL"])
        self.host, self.port = superuser.hostname, superuser.port
        self.passfile = os.path.join(work, "pgpass")
        with open(os.environ["DEFENDER_TEST_POSTGRES_SUPERUSER_PASSWORD_FILE"]) as handle:
            password = handle.read().strip()
        with open(os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(f"{self.host}:{self.port}:*:postgres:{password}\n")
        data = os.environ["DEFENDER_TEST_POSTGRES_DATA"]
        with open(os.path.join(data, "postmaster.pid")) as handle:
            self.postmaster = int(handle.readline())

    def admin(self, sql, database="postgres", check=True):
        result = subprocess.run([self.psql, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port),
                                 "-U", "postgres", "-d", database, "-c", sql],
                                env={**os.environ, "PGPASSFILE": self.passfile}, capture_output=True, text=True)
        if result.returncode != 0 and check:
            sys.exit(f"psql failed: {result.stderr.strip()}")
        return result.stdout if result.returncode == 0 else ""

    def fresh(self, name="bench"):
        """An empty database `name` owned by the daemons' role; its URL."""
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.admin(f"CREATE DATABASE {name} OWNER alertd_test")
        return self.url.rsplit("/", 1)[0] + "/" + name

    def cpu(self):
        """CPU seconds of the server: the postmaster, the backends it reaped, those alive."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in [self.postmaster] + children(self.postmaster):
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a backend that ended meanwhile: counted in the postmaster's cutime
            total += (int(fields[11]) + int(fields[12])) / ticks
            if pid == self.postmaster:
                total += (int(fields[13]) + int(fields[14])) / ticks
        return total


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def group_config(work, base, database, tenants, interval="60s", lookback="2d", sink='path = "alerts.jsonl"', sink_type="file"):
    """The configuration of a daemon on `database` (None: the embedded state)."""
    lines = ['[service]', 'state_directory = "state"', 'log_level = "warning"', f'poll_interval = "{interval}"']
    if database:
        lines += [f'state_database = "{database}"', f'state_database_password_file = "{os.environ["DEFENDER_TEST_POSTGRES_PASSWORD_FILE"]}"']
    for index in range(tenants):
        tenant_id = TENANT if tenants == 1 else f"t{index}.bench.example"
        lines += ['[[tenant]]', f'name = "bench{index}"', f'tenant_id = "{tenant_id}"', f'client_id = "{CLIENT}"',
                  'client_secret_file = "secret"', f'api_url = "{base}"', f'login_url = "{base}"',
                  f'lookback = "{lookback}"', f'page_size = {PAGE}']
    lines += ['[[sink]]', 'name = "archive"', f'type = "{sink_type}"', sink]
    if sink_type == "file":
        lines.append('max_size = "0"')
    path = os.path.join(work, "postgres.toml" if database else "embedded.toml")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o644)
    return path


def lines_in(path):
    """Lines in a file, read a megabyte at a time (the harness's own memory stays small)."""
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def run_until_delivered(build, config, work, alerts, server=None, timeout=1800):
    """`defender-alertd run` until the file sink holds `alerts` lines, then SIGTERM: the
    daemon's CPU (wait4) and peak RSS (`VmHWM` before the SIGTERM), wall to the last alert,
    the server's CPU meanwhile."""
    sink = os.path.join(work, "alerts.jsonl")
    server_before = server.cpu() if server else 0.0
    start = time.monotonic()
    # The log goes to a file: a pipe nobody reads until the end fills up and blocks the daemon's writes.
    log = open(os.path.join(work, "daemon.log"), "wb")
    daemon = subprocess.Popen([f"{build}/defender-alertd", "run", "--config", config, "--log-target", "stderr"], cwd=work,
                              stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    tail = lambda: open(os.path.join(work, "daemon.log"), "rb").read()[-2000:].decode(errors="replace")
    while lines_in(sink) < alerts:
        if daemon.poll() is not None:
            sys.exit(f"the daemon stopped during the backfill: {tail()}")
        if time.monotonic() - start > timeout:
            daemon.kill()
            sys.exit(f"the backfill did not finish in {timeout} s")
        time.sleep(0.05)
    wall = time.monotonic() - start
    rss = peak_rss(daemon.pid)
    daemon.terminate()
    _, status, usage = os.wait4(daemon.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"the daemon exited with {os.waitstatus_to_exitcode(status)}: {tail()}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "server_cpu": (server.cpu() - server_before) if server else 0.0,
            "wall": wall, "rss": rss, "rate": alerts / wall}


def storage(build, config, work):
    """What `state show` says of the room the state takes: {part: (rows, bytes)}."""
    shown = subprocess.run([f"{build}/defender-alertd", "state", "show", "--config", config], cwd=work, capture_output=True, text=True)
    if shown.returncode != 0:
        sys.exit(f"state show failed: {shown.stderr[-2000:]}")
    parts = {}
    for line in shown.stdout.splitlines():
        match = re.match(r"storage (.+?): (?:(\d+) rows)?(?:, )?(?:(\d+) bytes)?", line)
        if match:
            parts[match.group(1)] = (int(match.group(2) or 0), int(match.group(3) or 0))
    return parts


def postgres_backfill(build, sizes, runs):
    """The backfill by `run` on the embedded state and on PostgreSQL, alternating; then the
    room per 1,000 alerts: kept (dedup keys) after delivery, and queued (a sink that refuses)."""
    results = {}
    work = tempfile.mkdtemp(prefix="defender-alertd-bench-pg-")
    server = Postgres(work)
    try:
        write_secret(work)
        for alerts in sizes:
            sim, base = start_simulator(build, alerts)
            try:
                samples = {"embedded": [], "postgresql": []}
                order = list(samples)
                kept = {}
                for round in range(runs + 1):  # round 0 is the warm-up
                    for name in order:
                        shutil.rmtree(os.path.join(work, "state"), ignore_errors=True)
                        with contextlib.suppress(FileNotFoundError):
                            os.remove(os.path.join(work, "alerts.jsonl"))
                        database = server.fresh() if name == "postgresql" else None
                        config = group_config(work, base, database, 1)
                        sample = run_until_delivered(build, config, work, alerts, server if database else None)
                        if round > 0:
                            samples[name].append(sample)
                        kept[name] = storage(build, config, work)
                    order = order[1:] + order[:1]
                results[alerts] = {name: {key: statistics.median(s[key] for s in runs_) for key in runs_[0]} for name, runs_ in samples.items()}
                results[alerts]["kept"] = kept
            finally:
                sim.terminate()
                sim.wait()
            report_postgres(alerts, results[alerts], runs)
        # Queued: the smallest backlog admitted with a sink that refuses every connection.
        alerts = min(sizes)
        sim, base = start_simulator(build, alerts)
        try:
            queued = {}
            for name in ("embedded", "postgresql"):
                shutil.rmtree(os.path.join(work, "state"), ignore_errors=True)
                database = server.fresh() if name == "postgresql" else None
                closed = socket.socket()
                closed.bind(("127.0.0.1", 0))  # bound, never listening: every connection refused
                config = group_config(work, base, database, 1, sink=f'url = "http://127.0.0.1:{closed.getsockname()[1]}/"', sink_type="http")
                # The log goes to a file: a daemon that ended here once, unexplained, left the
                # harness waiting for its deadline with nothing to show why.
                log_path = os.path.join(work, f"queued-{name}.log")
                with open(log_path, "wb") as log:
                    daemon = subprocess.Popen([f"{build}/defender-alertd", "run", "--config", config, "--log-target", "stderr"], cwd=work,
                                              stdout=subprocess.DEVNULL, stderr=log)
                try:
                    deadline = time.monotonic() + 600
                    while True:
                        shown = subprocess.run([f"{build}/defender-alertd", "state", "show", "--config", config], cwd=work,
                                               capture_output=True, text=True).stdout
                        if f"sink archive: {alerts} alerts queued" in shown or time.monotonic() > deadline:
                            break
                        if daemon.poll() is not None:
                            with open(log_path, "rb") as log:
                                tail = log.read()[-3000:].decode(errors="replace")
                            print(f"warning: the daemon of the queued step ({name}) ended with {daemon.returncode} before "
                                  f"{alerts} alerts were queued; its log:\n{tail}\nstate show:\n{shown}", flush=True)
                            break
                        time.sleep(1)
                    queued[name] = storage(build, config, work)
                finally:
                    daemon.terminate()
                    daemon.wait()
                    closed.close()
            results["queued"] = {"alerts": alerts, **queued}
        finally:
            sim.terminate()
            sim.wait()
    finally:
        with contextlib.suppress(SystemExit):
            server.admin("DROP DATABASE IF EXISTS bench WITH (FORCE)")
        shutil.rmtree(work, ignore_errors=True)
    for line in sizing_table(results):
        print(line)
    return results


def report_postgres(alerts, medians, runs):
    print(f"\nbackfill of {alerts:,} alerts by `run`, embedded state against PostgreSQL: medians of {runs} alternating runs")
    for line in postgres_table({alerts: medians}):
        print(line)


def postgres_table(results):
    lines = ["| alerts | | embedded | PostgreSQL | PostgreSQL / embedded |", "| --- | --- | --- | --- | --- |"]
    for alerts in sorted(key for key in results if isinstance(key, int)):
        embedded, postgres = results[alerts]["embedded"], results[alerts]["postgresql"]
        both = postgres["cpu"] + postgres["server_cpu"]
        rows = (("daemon CPU", f"{embedded['cpu']:.2f} s", f"{postgres['cpu']:.2f} s", f"{postgres['cpu'] / embedded['cpu']:.2f}×"),
                ("daemon + server CPU", f"{embedded['cpu']:.2f} s", f"{both:.2f} s ({postgres['server_cpu']:.2f} s server)", f"{both / embedded['cpu']:.2f}×"),
                ("wall", f"{embedded['wall']:.2f} s", f"{postgres['wall']:.2f} s", f"{postgres['wall'] / embedded['wall']:.2f}×"),
                ("alerts a second", f"{embedded['rate']:,.0f}", f"{postgres['rate']:,.0f}", f"{postgres['rate'] / embedded['rate']:.2f}×"),
                ("peak RSS", f"{embedded['rss']:.1f} MiB", f"{postgres['rss']:.1f} MiB", f"{postgres['rss'] / embedded['rss']:.2f}×"))
        for index, row in enumerate(rows):
            lines.append(f"| {f'{alerts:,}' if index == 0 else ''} | {' | '.join(row)} |")
    return lines


def sizing_table(results):
    """Rows and bytes per 1,000 alerts: kept after delivery (the largest backlog), and queued."""
    largest = max(key for key in results if isinstance(key, int))
    kept, queued = results[largest]["kept"], results["queued"]
    per = lambda value, alerts: value * 1000 / alerts
    kib = lambda parts, names, alerts: sum(parts.get(name, (0, 0))[1] for name in names) / 1024 * 1000 / alerts
    lines = ["| per 1,000 alerts | embedded | PostgreSQL |", "| --- | --- | --- |",
             f"| dedup keys kept 180 days (`seen`, rows and KiB with indexes) | {per(kept['embedded'].get('seen', (0, 0))[0], largest):.0f} rows, "
             f"{kib(kept['embedded'], ['seen'], largest):.0f} KiB | {per(kept['postgresql'].get('seen', (0, 0))[0], largest):.0f} rows, "
             f"{kib(kept['postgresql'], ['seen'], largest):.0f} KiB |",
             f"| queued until every sink has them (KiB) | {kib(queued['embedded'], ['outbox log'], queued['alerts']):.0f} (outbox log) | "
             f"{kib(queued['postgresql'], ['outbox', 'outbox_pending'], queued['alerts']):.0f} (`outbox` and `outbox_pending`, one sink) |"]
    return lines


def group_scale(build, tenants, members, seconds):
    """`tenants` tenants over 1, 2, 3... daemons of a group on one PostgreSQL: once every
    tenant is held and the spread settled, each daemon's CPU and RSS over `seconds`."""
    results = {}
    work = tempfile.mkdtemp(prefix="defender-alertd-bench-group-")
    server = Postgres(work)
    domains = [arg for index in range(tenants) for arg in ("--tenant-domain", f"t{index}.bench.example")]
    sim, base = start_simulator(build, 0, domains)
    try:
        write_secret(work)
        for count in members:
            database = server.fresh()
            config = group_config(work, base, database, tenants, lookback="1h")
            daemons = [subprocess.Popen([f"{build}/defender-alertd", "run", "--config", config, "--log-target", "stderr"], cwd=work,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(count)]
            try:
                deadline = time.monotonic() + 300
                while True:
                    if any(daemon.poll() is not None for daemon in daemons):
                        sys.exit("a daemon of the group stopped")
                    # (No table yet: the first daemon has not migrated the schema.)
                    rows = server.admin("SELECT holder, count(*) FROM lease WHERE holder IS NOT NULL AND expires_at > now() GROUP BY holder",
                                        database="bench", check=False).split()
                    spread = sorted(int(row.split("|")[1]) for row in rows)
                    if (len(spread) == count and sum(spread) == tenants and spread[-1] - spread[0] <= 1) or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                settled = time.monotonic()
                first = [proc_sample(daemon.pid) for daemon in daemons]
                calls0 = alerts_calls(base)
                time.sleep(seconds)
                last = [proc_sample(daemon.pid) for daemon in daemons]
                elapsed = time.monotonic() - settled
                results[count] = {"seconds": elapsed, "polls": alerts_calls(base) - calls0, "spread": spread,
                                  "cpu_percent": [(b.cpu - a.cpu) * 100 / elapsed for a, b in zip(first, last)],
                                  "rss_mib": [b.rss for b in last]}
            finally:
                for daemon in daemons:
                    daemon.terminate()
                for daemon in daemons:
                    daemon.wait()
            print(f"\ngroup: {tenants} tenants over {count} daemons, spread {spread}: CPU "
                  + ", ".join(f"{c:.2f} %" for c in results[count]["cpu_percent"]) + "; RSS "
                  + ", ".join(f"{r:.1f} MiB" for r in results[count]["rss_mib"]))
    finally:
        sim.terminate()
        sim.wait()
        with contextlib.suppress(SystemExit):
            server.admin("DROP DATABASE IF EXISTS bench WITH (FORCE)")
        shutil.rmtree(work, ignore_errors=True)
    return {"tenants": tenants, "members": results}


def group_table(report):
    lines = ["| daemons | tenants each | CPU per daemon (% of one core) | RSS per daemon | polls in the window |", "| --- | --- | --- | --- | --- |"]
    for count, row in sorted(report["members"].items(), key=lambda item: int(item[0])):
        lines.append(f"| {count} | {' / '.join(str(n) for n in row['spread'])} | {' / '.join(f'{c:.2f}' for c in row['cpu_percent'])} | "
                     f"{' / '.join(f'{r:.1f} MiB' for r in row['rss_mib'])} | {row['polls']} in {row['seconds']:.0f} s |")
    return lines


def commit():
    """The short commit of the tree measured, `-dirty` when it has changes."""
    def git(*arguments):
        try:
            return subprocess.run(["git", "-C", os.path.dirname(HERE), *arguments], capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def write_readme(path, report, runs, plot_path, started, seconds, measured):
    """Replaces what is between the README's bench markers with this run's tables."""
    machine = f"{os.uname().machine}, {os.cpu_count()} cores, Linux {os.uname().release}"
    lines = [f"Run of {started:%Y-%m-%d, %H:%M} UTC at commit {measured} ({seconds / 60:.1f} minutes; {machine}):", ""]
    if "backfill" in report:
        lines += [f"Backfill, medians of {runs} alternating runs:", ""] + backfill_table(report["backfill"]) + [""]
        sizes = sorted(report["backfill"])
        largest, smaller = report["backfill"][sizes[-1]], report["backfill"][sizes[-2]] if len(sizes) > 1 else None
        per_alert = ", ".join(f"{name} {largest[key]['cpu'] / sizes[-1] * 1e6:.0f} µs" for name, key in
                              (("the daemon", "daemon"), ("the script", "python"), ("curl", "curl")))
        lines += [f"CPU per alert at {sizes[-1]:,}: {per_alert}."
                  + (f" The daemon's peak RSS at {sizes[-1]:,} is {largest['daemon']['rss'] / smaller['daemon']['rss']:.2f}× "
                     f"the figure at {sizes[-2]:,} (memory follows one page, not the backlog)." if smaller else ""), ""]
        if plot_path:
            lines += [f"![CPU and peak RSS against the number of alerts]({plot_path})", ""]
    if "orders" in report:
        lines += [f"API calls per full page of {PAGE} alerts, for each order of results (the APIs promise none); "
                  f"the goal is at most {CALLS_PER_PAGE_GOAL} in every order:", ""] + orders_table(report["orders"]) + [""]
    if "idle" in report:
        idle = report["idle"]
        lines += [f"Idle: {idle['polls']} empty polls, {idle['cpu_ms_per_poll']:.2f} ms CPU each; RSS {idle['rss_after_10_mib']:.1f} MiB "
                  f"after 10, {idle['rss_mib']:.1f} MiB at the end (anonymous {idle['anon_after_10_mib']:.1f} and {idle['anon_mib']:.1f} MiB); "
                  f"{idle['threads']} threads.", ""]
    if "postgres" in report:
        postgres = report["postgres"]
        lines += [f"PostgreSQL state against the embedded state: the same backfill by `defender-alertd run` (to the last alert in "
                  f"the file sink), medians of {runs} alternating runs; the server's CPU is its postmaster and backends:", ""]
        lines += postgres_table(postgres) + [""]
        lines += ["Room the state takes, from `state show`:", ""] + sizing_table(postgres) + [""]
    if "group" in report:
        lines += [f"A group: {report['group']['tenants']} tenants (60 s interval, no alerts) over 1, 2 and 3 daemons on one PostgreSQL, "
                  f"measured once the leases settled:", ""] + group_table(report["group"]) + [""]
    replace_block(path, "bench", lines)
    print(f"README: {path}")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = sorted(results)
    figure, (cpu, rss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, style in (("daemon", "o-"), ("python", "s--"), ("curl", "^:")):
        cpu.plot(sizes, [results[n][name]["cpu"] for n in sizes], style, label=name)
        rss.plot(sizes, [results[n][name]["rss"] for n in sizes], style, label=name)
    for axis, label in ((cpu, "CPU, user + sys (s)"), (rss, "peak RSS (MiB)")):
        axis.set_xscale("log")
        axis.set_xlabel("alerts (with evidence), page_size 1000")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.legend()
    cpu.set_yscale("log")
    figure.suptitle(f"backfill: medians of alternating runs ({os.uname().machine}, {os.cpu_count()} cores)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"\nplot: {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=".build-release/release")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle-polls", type=int, default=1000)
    parser.add_argument("--scale-sizes", default="1000,3000,10000", help="tenants in one daemon, a run each")
    parser.add_argument("--scale-seconds", type=int, default=60, help="each scale run's measured window")
    parser.add_argument("--scale-trickle", type=int, default=2, help="alerts added over a last run at the largest size")
    parser.add_argument("--order-sizes", default="20000,100000", help="backlogs read in each order of results, for calls per full page")
    parser.add_argument("--pg-sizes", default="10000,100000", help="backlogs of the PostgreSQL against embedded backfill")
    parser.add_argument("--group-tenants", type=int, default=600)
    parser.add_argument("--group-seconds", type=int, default=180)
    parser.add_argument("--out", default=".build/bench")
    parser.add_argument("--readme", default=os.path.join(os.path.dirname(HERE), "README.md"),
                        help="README to write the tables into (between its bench markers)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: backfill, idle, scale, orders, postgres, group")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the harness (the README written is a copy under --out)")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.runs, args.idle_polls, args.order_sizes = "300,1500", 1, 10, "3000"
        args.scale_sizes, args.scale_seconds, args.scale_trickle = "3,12", 6, 2
        args.pg_sizes, args.group_tenants, args.group_seconds = "300,600", 6, 3
    args.build = os.path.abspath(args.build)
    skip = set(filter(None, args.skip.split(",")))
    os.makedirs(args.out, exist_ok=True)
    started, clock = datetime.datetime.now(datetime.timezone.utc), time.monotonic()
    # The commit measured is the one the run starts at (the binaries were built from it),
    # whatever is committed while it runs.
    measured = commit()
    print(f"machine: {os.uname().machine}, {os.cpu_count()} cores, {os.uname().release}; build: {args.build}; commit {measured}")
    report = {}
    plot_path = None
    if "backfill" not in skip:
        report["backfill"] = backfill(args.build, [int(n) for n in args.sizes.split(",")], args.runs)
        plot(report["backfill"], os.path.join(args.out, "backfill.png"))
        if not args.smoke:
            # Kept beside the README that shows it, named by the day of the run.
            plot_path = f"benchmarks/results/backfill-{started:%Y-%m-%d}.png"
            shutil.copy(os.path.join(args.out, "backfill.png"), os.path.join(os.path.dirname(HERE), plot_path))
        else:
            plot_path = "backfill.png"
    if "orders" not in skip:
        report["orders"] = orders(args.build, [int(n) for n in args.order_sizes.split(",")])
    if "idle" not in skip:
        report["idle"] = idle(args.build, args.idle_polls)
    if "scale" not in skip:
        report["scale"] = scale(args.build, [int(n) for n in args.scale_sizes.split(",")], args.scale_seconds, args.scale_trickle,
                                interval=3 if args.smoke else 60)
    postgres = "DEFENDER_TEST_POSTGRES_URL" in os.environ
    if not postgres and not {"postgres", "group"} <= skip:
        print("postgres, group: skipped, no PostgreSQL server (run through scripts/with-postgres.sh, as make bench does)", file=sys.stderr)
    if postgres and "postgres" not in skip:
        report["postgres"] = postgres_backfill(args.build, [int(n) for n in args.pg_sizes.split(",")], args.runs)
    if postgres and "group" not in skip:
        report["group"] = group_scale(args.build, args.group_tenants, (1, 2, 3), args.group_seconds)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"results: {os.path.join(args.out, 'results.json')}")
    readme = args.readme
    if args.smoke:
        # The writer is exercised on a copy: tiny sizes never reach the real README.
        readme = os.path.join(args.out, "README.md")
        shutil.copy(args.readme, readme)
    if len(report) > ("scale" in report):
        write_readme(readme, report, args.runs, plot_path, started, time.monotonic() - clock, measured)
    if "scale" in report:
        plot_scale(report["scale"], os.path.join(args.out, "scale.png"))
        scale_plot = "scale.png" if args.smoke else f"benchmarks/results/scale-{started:%Y-%m-%d}.png"
        if not args.smoke:
            shutil.copy(os.path.join(args.out, "scale.png"), os.path.join(os.path.dirname(HERE), scale_plot))
        write_scale_readme(readme, report["scale"], scale_plot, started, measured, args.scale_seconds)
    over = [(api, alerts, order) for api, by_size in report.get("orders", {}).items() for alerts, by_order in by_size.items()
            for order, figure in by_order.items() if figure["calls_per_full_page"] > CALLS_PER_PAGE_GOAL]
    if over and not args.smoke:
        print(f"over the goal of {CALLS_PER_PAGE_GOAL} calls per full page: " + ", ".join(f"{a} {n} {o}" for a, n, o in over), file=sys.stderr)


if __name__ == "__main__":
    main()
