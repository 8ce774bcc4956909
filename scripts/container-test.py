#!/usr/bin/env python3
"""The image, run with Podman as a person would run it, against the project's simulator on
loopback (`--network host`); part of `make test` (`make image-test`).

    scripts/with-postgres.sh scripts/container-test.py --image localhost/defender-alertd:VERSION
        --build .build/debug [--measure SECONDS]

Checks, each failing the run with what was seen:
- a single container, embedded state on a volume, read-only root filesystem, every capability
  dropped, the client secret a Podman secret (mode 0400 for the daemon's user), `log_format =
  "json"`: /healthz, /healthz/live and /healthz/ready answer 200; every alert reaches the file
  sink on its volume; the daemon runs as uid 65532, not root; every log line is a JSON object
  and none holds the secret; `podman stop` (SIGTERM) ends it with exit 0 well within the grace
  period; the image has no shell;
- with PostgreSQL (scripts/with-postgres.sh): two containers of a group, no volume at all,
  share the tenants; one is killed (SIGKILL) and the other takes its tenants over: every alert
  added afterwards is delivered, none of the earlier ones is lost;
- the Quadlet unit deploy/podman/defender-alertd.container is turned into a service by Podman's
  own generator (this machine's, or Debian 13's that `--fetch-quadlet`, run by make deps-image,
  unpacked) and its `podman run` line runs the image, READY=1 coming through Podman.
--measure SECONDS: the figures of a running container (RSS, CPU while idle) beside the same binary on the host, printed.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SECRET = "container-canary-8c2f0d3b-secret"
CLIENT = "9c1e5a7b-3d2f-4a8e-b6c4-1f0d2e3a4b5c"
USER = 65532
GRACE = 30


def fail(message):
    sys.exit(f"container-test: FAILED: {message}")


def podman(*arguments, check=True, capture=True):
    result = subprocess.run(["podman", *arguments], capture_output=capture, text=True)
    if check and result.returncode != 0:
        fail(f"podman {' '.join(arguments)}: exit {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result


def wait_until(what, condition, timeout=120, containers=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    logs = "".join(f"\n--- {name}:\n{podman('logs', name, check=False).stderr[-3000:]}" for name in containers)
    fail(f"{what}: not within {timeout} s{logs}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None, ""


def lines(path):
    try:
        with open(path) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


class Simulator:
    def __init__(self, build, backlog, tenants=4):
        # One tenant, answering to each name the tests configure (each sees every alert).
        domains = [word for index in range(tenants) for word in ("--tenant-domain", f"t{index}.container.example")]
        self.process = subprocess.Popen(
            [f"{build}/defender-sim", "--port", "0", "--client-secret", SECRET, "--backlog", str(backlog), "--backlog-span", "600",
             *domains],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("listening "):
            fail(f"defender-sim did not start: {line!r}")
        self.base = line.split()[-1]

    def add_alerts(self, count):
        request = urllib.request.Request(f"{self.base}/_simulator/alerts", data=json.dumps({"count": count}).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).read()

    def alert_ids(self):
        body = json.load(urllib.request.urlopen(f"{self.base}/_simulator/alerts", timeout=30))
        return {alert["id"] for alert in body["value"]}

    def stop(self):
        self.process.kill()
        self.process.wait()


def config(base, metrics_port, tenants, service=(), sink_path="/var/log/defender-alertd/alerts.jsonl"):
    lines_ = ["[service]", 'poll_interval = "1s"', 'log_format = "json"', f'metrics_listen = "127.0.0.1:{metrics_port}"', *service]
    for index in range(tenants):
        lines_ += ["[[tenant]]", f'name = "t{index}"', f'tenant_id = "t{index}.container.example"', f'client_id = "{CLIENT}"',
                   'client_secret_file = "/run/secrets/client-secret"', f'api_url = "{base}"', f'login_url = "{base}"',
                   'lookback = "1d"', 'reconcile_every = "0"']
    lines_ += ["[[sink]]", 'name = "archive"', 'type = "file"', f'path = "{sink_path}"', 'format = "envelope"']
    return "\n".join(lines_) + "\n"


def write(path, text, mode):
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


class Run:
    """A container of the image, named, with its config directory and output volume."""

    def __init__(self, work, image, name, text, state_volume=True, extra=()):
        self.name, self.directory = name, os.path.join(work, name)
        self.out = os.path.join(self.directory, "out")
        os.makedirs(os.path.join(self.directory, "config"))
        os.makedirs(self.out)
        write(os.path.join(self.directory, "config", "defender-alertd.toml"), text, 0o644)
        volumes = ["-v", f"{self.directory}/config:/etc/defender-alertd:ro", "-v", f"{self.out}:/var/log/defender-alertd:U"]
        if state_volume:
            state = os.path.join(self.directory, "state")
            os.makedirs(state)
            volumes += ["-v", f"{state}:/var/lib/defender-alertd:U"]
        # A tmpfs for the secrets: Podman 4.3 cannot make a secret's mount point on a read-only
        # root filesystem (the Quadlet unit has the same line).
        podman("run", "--detach", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/run/secrets:size=1m,mode=0755",
               "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges", "--secret", f"defender-alertd-test-secret,type=mount,target=client-secret,uid={USER},gid={USER},mode=0400",
               *volumes, *extra, image)

    def delivered(self):
        return lines(os.path.join(self.out, "alerts.jsonl"))

    def logs(self):
        return podman("logs", self.name, check=False).stderr

    def pid(self):
        return int(podman("inspect", "--format", "{{.State.Pid}}", self.name).stdout.strip())

    def remove(self):
        podman("rm", "--force", "--time", "0", self.name, check=False)


def leases_held(run):
    """Tenants whose lease `run` holds, from its /metrics."""
    status, body = get(run.metrics + "/metrics")
    return sum(1 for line in body.splitlines() if line.startswith("defender_alertd_lease_held{") and line.endswith(" 1")) if status == 200 else -1


def records(runs):
    """(tenant, alert id) of every record delivered by `runs`, with repeats."""
    return [(record["tenant"], record["alert"]["id"]) for run in runs for record in run.delivered()]


def single(image, build, work, measure):
    simulator = Simulator(build, backlog=5)
    port = free_port()
    run = Run(work, image, "defender-alertd-test-single", config(simulator.base, port, tenants=2))
    try:
        metrics = f"http://127.0.0.1:{port}"
        wait_until("/healthz answers 200", lambda: get(metrics + "/healthz")[0] == 200, containers=[run.name])
        for probe in ("/healthz/live", "/healthz/ready"):
            status, body = get(metrics + probe)
            if status != 200:
                fail(f"{probe}: {status} {body}")
        expected = {(tenant, alert) for tenant in ("t0", "t1") for alert in simulator.alert_ids()}
        wait_until("every alert in the file sink on its volume", lambda: set(records([run])) >= expected, containers=[run.name])
        with open(f"/proc/{run.pid()}/status") as handle:
            uid = next(line.split()[1:] for line in handle if line.startswith("Uid:"))
        if uid != [str(USER)] * 4:
            fail(f"the daemon runs as uid {uid}, not {USER}")
        inspect = json.loads(podman("inspect", run.name).stdout)[0]
        if not inspect["HostConfig"]["ReadonlyRootfs"]:
            fail("the root filesystem is not read-only")
        if podman("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c", "true", check=False).returncode == 0:
            fail("the image has a shell")
        print(f"container: /healthz 200, {len(expected)} alerts delivered to the volume, uid {USER}, read-only root, no shell")
        if measure:
            measure_idle(run, measure, simulator, work)
        started = time.monotonic()
        podman("stop", "--time", str(GRACE), run.name)
        took = time.monotonic() - started
        code = json.loads(podman("inspect", run.name).stdout)[0]["State"]["ExitCode"]
        if code != 0 or took >= GRACE:
            fail(f"podman stop: exit {code} after {took:.1f} s (grace {GRACE} s)\n{run.logs()[-3000:]}")
        log = run.logs().splitlines()
        for line in log:
            try:
                entry = json.loads(line)
            except ValueError:
                fail(f"a log line is not JSON: {line!r}")
            if not {"TIMESTAMP", "MESSAGE", "PRIORITY"} <= entry.keys():
                fail(f"a log line lacks TIMESTAMP, MESSAGE or PRIORITY: {line!r}")
        if SECRET in "\n".join(log):
            fail("the client secret is in the log")
        if not any("stopped" in json.loads(line)["MESSAGE"] for line in log):
            fail("no 'stopped' line in the log")
        print(f"container: SIGTERM (podman stop) ended it with exit 0 in {took:.1f} s; {len(log)} log lines, each a JSON object, no secret")
    finally:
        run.remove()
        simulator.stop()


def measure_idle(run, seconds, simulator, work):
    """RSS and CPU of the running container beside the same binary run on the host with the same
    configuration (the image's copy of it, .build/image/rootfs), over the same window, so that
    both see the same noise: the container's cost is the ratio. Both poll 2 tenants every second
    and find nothing new."""
    binary = os.path.join(ROOT, ".build", "image", "rootfs", "usr", "bin", "defender-alertd")
    host = os.path.join(work, "host")
    os.makedirs(os.path.join(host, "out"))
    write(os.path.join(host, "client-secret"), SECRET + "\n", 0o600)
    text = config(simulator.base, free_port(), tenants=2, sink_path=os.path.join(host, "out", "alerts.jsonl"))
    text = text.replace("/run/secrets/client-secret", os.path.join(host, "client-secret"))
    write(os.path.join(host, "defender-alertd.toml"), text, 0o644)
    process = subprocess.Popen([binary, "run", "--config", os.path.join(host, "defender-alertd.toml")],
                               env=dict(os.environ, STATE_DIRECTORY=os.path.join(host, "state")), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_until("the host's daemon delivers the backlog", lambda: len(lines(os.path.join(host, "out", "alerts.jsonl"))) == 10)
        pids = {"container": run.pid(), "host": process.pid}
        ticks = os.sysconf("SC_CLK_TCK")

        def cpu(pid):
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        def rss(pid):
            with open(f"/proc/{pid}/status") as handle:
                return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024

        time.sleep(5)
        before, start = {name: cpu(pid) for name, pid in pids.items()}, time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - start
        figures = {name: (100 * (cpu(pid) - before[name]) / wall, rss(pid)) for name, pid in pids.items()}
        (container_cpu, container_rss), (host_cpu, host_rss) = figures["container"], figures["host"]
        print(f"container figures over {wall:.0f} s (2 tenants polled every second, nothing new), the same binary on the host "
              f"beside it: CPU {container_cpu:.2f} % of a core in the container, {host_cpu:.2f} % on the host "
              f"({container_cpu / host_cpu:.2f}x); RSS {container_rss:.1f} MiB and {host_rss:.1f} MiB ({container_rss / host_rss:.2f}x)")
    finally:
        process.terminate()
        process.wait()


def group(image, build, work):
    url, password_file = os.environ.get("DEFENDER_TEST_POSTGRES_URL"), os.environ.get("DEFENDER_TEST_POSTGRES_PASSWORD_FILE")
    if not url:
        print("container: the group part needs PostgreSQL: run through scripts/with-postgres.sh (make test does)")
        sys.exit(1)
    database = f"container_{os.getpid()}"
    superuser = os.environ["DEFENDER_TEST_POSTGRES_SUPERUSER_URL"]
    with open(os.environ["DEFENDER_TEST_POSTGRES_SUPERUSER_PASSWORD_FILE"]) as handle:
        environment = dict(os.environ, PGPASSWORD=handle.read().strip())
    psql = os.path.join(os.environ["DEFENDER_TEST_POSTGRES_BIN"], "psql")
    subprocess.run([psql, superuser, "-qc", f"CREATE DATABASE {database} OWNER alertd_test"], env=environment, check=True)
    member_url = url.rsplit("/", 1)[0] + "/" + database
    with open(password_file) as handle:
        write(os.path.join(work, "pg-password"), handle.read(), 0o600)
    podman("secret", "rm", "defender-alertd-test-pg", check=False)
    podman("secret", "create", "defender-alertd-test-pg", os.path.join(work, "pg-password"))
    pg_secret = ["--secret", f"defender-alertd-test-pg,type=mount,target=pg-password,uid={USER},gid={USER},mode=0400"]
    simulator = Simulator(build, backlog=3)
    tenants = 4
    runs = []
    try:
        for member in ("a", "b"):
            service = [f'state_database = "{member_url}"', 'state_database_password_file = "/run/secrets/pg-password"',
                       'lease_ttl = "6s"', f'member_name = "{member}"']
            port = free_port()
            run = Run(work, image, f"defender-alertd-test-member-{member}", config(simulator.base, port, tenants, service),
                      state_volume=False, extra=pg_secret)
            run.metrics = f"http://127.0.0.1:{port}"
            runs.append(run)
        names = [run.name for run in runs]
        for run in runs:
            wait_until(f"{run.name}: /healthz/ready answers 200 (PostgreSQL reached)", lambda: get(run.metrics + "/healthz/ready")[0] == 200,
                       containers=names)
        first = {(f"t{index}", alert) for index in range(tenants) for alert in simulator.alert_ids()}
        wait_until("the backlog delivered by the two members", lambda: set(records(runs)) >= first, containers=names)
        wait_until("the tenants spread, two a member", lambda: [leases_held(run) for run in runs] == [2, 2], containers=names)
        killed, survivor = runs
        podman("kill", "--signal", "KILL", killed.name)
        wait_until(f"{survivor.name} holds every tenant", lambda: leases_held(survivor) == tenants, containers=names)
        simulator.add_alerts(2)
        everything = {(f"t{index}", alert) for index in range(tenants) for alert in simulator.alert_ids()}
        later = everything - first
        wait_until(f"{survivor.name} delivers every alert added after {killed.name} was killed",
                   lambda: set(records([survivor])) >= later, timeout=180, containers=names)
        missing = everything - set(records(runs))
        if missing:
            fail(f"lost: {sorted(missing)}")
        all_records = records(runs)
        duplicates = len(all_records) - len(set(all_records))
        print(f"container group: two members on PostgreSQL (no volume), {len(first)} records delivered, the tenants two a member; "
              f"{killed.name} killed (SIGKILL), {survivor.name} took its tenants over and delivered the {len(later)} records added later; "
              f"0 lost, {duplicates} delivered twice")
    finally:
        for run in runs:
            run.remove()
        podman("secret", "rm", "defender-alertd-test-pg", check=False)
        simulator.stop()


QUADLET_CACHE = os.path.join(ROOT, ".build", "tools", "quadlet")


def quadlet_generator():
    """Podman's Quadlet generator: this machine's (Podman 4.4 and later), else the one `make
    deps-image` took out of Debian's podman package (fetch_quadlet)."""
    for path in ("/usr/libexec/podman/quadlet", "/usr/lib/podman/quadlet",
                 os.path.join(QUADLET_CACHE, "usr", "libexec", "podman", "quadlet")):
        if os.access(path, os.X_OK):
            return path
    fail("no Quadlet generator: make deps-image takes it out of Debian's podman package")


def fetch_quadlet():
    """Installs what the test needs, as apt does (make deps-image): when this machine's Podman
    has no Quadlet (Debian 12's 4.3), the generator of Debian 13's podman package (it runs on
    Debian 12's C library), checked against the SHA256 of Debian's index, unpacked under
    .build/tools/quadlet, not installed."""
    for path in ("/usr/libexec/podman/quadlet", "/usr/lib/podman/quadlet",
                 os.path.join(QUADLET_CACHE, "usr", "libexec", "podman", "quadlet")):
        if os.access(path, os.X_OK):
            return
    mirror = "http://deb.debian.org/debian"
    index = subprocess.run(f"curl -fsS {mirror}/dists/trixie/main/binary-amd64/Packages.xz | xz -dc", shell=True,
                           capture_output=True, text=True, check=True).stdout
    stanza = re.search(r"^Package: podman\n(?:.+\n)*?Filename: (\S+)\n(?:.+\n)*?SHA256: (\S+)", index, re.M)
    if not stanza:
        fail("Debian's trixie index has no podman package")
    work = tempfile.mkdtemp(prefix="defender-alertd-quadlet-")
    try:
        deb = os.path.join(work, "podman.deb")
        subprocess.run(["curl", "-fsS", "-o", deb, f"{mirror}/{stanza.group(1)}"], check=True)
        digest = subprocess.run(["sha256sum", deb], capture_output=True, text=True, check=True).stdout.split()[0]
        if digest != stanza.group(2):
            fail(f"{stanza.group(1)}: SHA256 {digest}, the index says {stanza.group(2)}")
        shutil.rmtree(QUADLET_CACHE, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", deb, QUADLET_CACHE], check=True)
        print(f"quadlet: {stanza.group(1)} unpacked in {os.path.relpath(QUADLET_CACHE, ROOT)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def quadlet(image, build, work):
    """The Quadlet unit as Podman's generator reads it; then its `podman run` line, run here with
    a notify socket of the test's, as systemd would run it: READY=1 must come through Podman
    (Type=notify) and the alerts out."""
    units = os.path.join(work, "quadlet")
    os.makedirs(units)
    shutil.copy(os.path.join(ROOT, "deploy", "podman", "defender-alertd.container"), units)
    generated = subprocess.run([quadlet_generator(), "-dryrun"], env=dict(os.environ, QUADLET_UNIT_DIRS=units),
                               capture_output=True, text=True)
    if generated.returncode != 0 or "---defender-alertd.service---" not in generated.stdout:
        fail(f"quadlet -dryrun: exit {generated.returncode}: {generated.stderr[-2000:]}{generated.stdout[-2000:]}")
    service = generated.stdout
    for expected in ("Type=notify", "--sdnotify=container", "--read-only", "--cap-drop all", "--user 65532:65532",
                     "localhost/defender-alertd:latest"):
        if expected not in service:
            fail(f"the generated service lacks {expected!r}:\n{service}")
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))

    # The unit's paths and names, the test's own here. --cgroups=split puts the container in the
    # service's cgroup, which only systemd makes (Delegate=yes): dropped outside it.
    simulator = Simulator(build, backlog=3)
    directory = os.path.join(work, "quadlet-run")
    for sub in ("config", "state", "out"):
        os.makedirs(os.path.join(directory, sub))
    write(os.path.join(directory, "config", "defender-alertd.toml"),
          config(simulator.base, free_port(), tenants=1).replace('log_format = "json"', 'log_format = "text"'), 0o644)
    name = "defender-alertd-test-quadlet"
    replace = {"--name": name, "--cidfile=%t/%N.cid": f"--cidfile={directory}/cid", "--cgroups=split": None,
               "/etc/defender-alertd:/etc/defender-alertd:ro": f"{directory}/config:/etc/defender-alertd:ro",
               "defender-alertd-state:/var/lib/defender-alertd:U": f"{directory}/state:/var/lib/defender-alertd:U",
               "/var/log/defender-alertd:/var/log/defender-alertd:U": f"{directory}/out:/var/log/defender-alertd:U"}
    argv = []
    words = shlex.split(exec_start[len("ExecStart="):])
    for index, word in enumerate(words):
        if index > 0 and words[index - 1] == "--name":
            argv.append(name)
        elif word.startswith("defender-alertd-client-secret,"):
            argv.append(word.replace("defender-alertd-client-secret,", "defender-alertd-test-secret,", 1))
        elif word in replace:
            if replace[word] is not None and word != "--name":
                argv.append(replace[word])
            elif word == "--name":
                argv.append(word)
        else:
            argv.append(word)
    socket_path = os.path.join(directory, "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(socket_path)
    listener.settimeout(5)
    run = subprocess.Popen(argv, env=dict(os.environ, NOTIFY_SOCKET=socket_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    messages = []
    try:
        deadline = time.monotonic() + 120
        while not any("READY=1" in message for message in messages) and time.monotonic() < deadline:
            try:
                messages.append(listener.recv(65536).decode())
            except socket.timeout:
                if run.poll() not in (None, 0):
                    fail(f"the unit's podman run: exit {run.returncode}: {run.stderr.read()[-2000:]}")
        if not any("READY=1" in message for message in messages):
            fail(f"no READY=1 through Podman within 120 s: {messages}\n{podman('logs', name, check=False).stderr[-3000:]}")
        out = os.path.join(directory, "out", "alerts.jsonl")
        wait_until("the unit's container delivers the alerts", lambda: len(lines(out)) == 3, containers=[name])
        podman("stop", "--time", str(GRACE), name)
        print(f"quadlet: defender-alertd.container generates defender-alertd.service (Type=notify); its podman run line "
              f"ran the image: READY=1 came through Podman, 3 alerts delivered, stopped")
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)
        run.wait()
        listener.close()
        simulator.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetch-quadlet", action="store_true", help="only install the Quadlet generator when missing")
    parser.add_argument("--image")
    parser.add_argument("--build", help="the build whose defender-sim serves the containers")
    parser.add_argument("--measure", type=int, default=0, help="seconds of idle to measure the running container over")
    parser.add_argument("--skip", default="", help="comma-separated: single, group, quadlet")
    arguments = parser.parse_args()
    if arguments.fetch_quadlet:
        fetch_quadlet()
        return
    if not arguments.image or not arguments.build:
        parser.error("--image and --build are required")
    skip = set(filter(None, arguments.skip.split(",")))
    work = tempfile.mkdtemp(prefix="defender-alertd-container-")
    podman("secret", "rm", "defender-alertd-test-secret", check=False)
    write(os.path.join(work, "client-secret"), SECRET + "\n", 0o600)
    podman("secret", "create", "defender-alertd-test-secret", os.path.join(work, "client-secret"))
    try:
        if "single" not in skip:
            single(arguments.image, arguments.build, work, arguments.measure)
        if "group" not in skip:
            group(arguments.image, arguments.build, work)
        if "quadlet" not in skip:
            quadlet(arguments.image, arguments.build, work)
    finally:
        podman("secret", "rm", "defender-alertd-test-secret", check=False)
        shutil.rmtree(work, ignore_errors=True)
    print("container-test: passed")


if __name__ == "__main__":
    main()
