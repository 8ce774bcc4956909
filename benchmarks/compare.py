#!/usr/bin/env python3
"""Two builds of the daemon side by side on the same work, to tell whether a change made the
embedded state's figures regress (a figure of one run against one measured another day says
little on a noisy machine).

    benchmarks/compare.py --before DIR --after DIR [--sizes 10000,100000] [--runs 5]
                          [--idle-polls 300]

DIR holds a release build's defender-alertd (the simulator is --after's defender-sim, for
both). A backfill (`poll-once`, embedded state, one file sink, as `make bench` measures it)
runs for each build in turn, who goes first alternating, a warm-up round first; medians.
The idle figure runs both daemons at once, each polling a simulator of its own every 600 ms:
both see the same noise. Prints after/before for each figure; nothing is written.
"""
import argparse
import os
import shutil
import statistics
import tempfile
import time

import bench


def backfill(builds, sim_build, alerts, runs):
    sim, base = bench.start_simulator(sim_build, alerts)
    work = tempfile.mkdtemp(prefix="defender-alertd-compare-")
    try:
        config = bench.write_config(work, base)
        bench.write_secret(work)
        samples = {name: [] for name in builds}
        order = list(builds)
        for round in range(runs + 1):  # round 0 is the warm-up
            for name in order:
                shutil.rmtree(os.path.join(work, "state"), ignore_errors=True)
                for stale in os.listdir(work):
                    if stale.startswith("alerts.jsonl"):
                        os.remove(os.path.join(work, stale))
                sample = bench.measure([f"{builds[name]}/defender-alertd", "poll-once", "--config", config], work, base)
                if bench.lines_in(os.path.join(work, "alerts.jsonl")) != alerts:
                    raise SystemExit(f"{name}: {bench.lines_in(os.path.join(work, 'alerts.jsonl'))} alerts delivered of {alerts}")
                if round > 0:
                    samples[name].append(sample)
            order = order[1:] + order[:1]
        return {name: {key: statistics.median(s[key] for s in runs_) for key in runs_[0]} for name, runs_ in samples.items()}
    finally:
        sim.terminate()
        sim.wait()
        shutil.rmtree(work, ignore_errors=True)


def idle(builds, sim_build, polls):
    with bench.running_daemon(builds["before"], interval="600ms", sim_build=sim_build) as (before, before_base), \
         bench.running_daemon(builds["after"], interval="600ms", sim_build=sim_build) as (after, after_base):
        daemons = {"before": (before, before_base), "after": (after, after_base)}

        def wait_for(calls):
            while min(bench.alerts_calls(base) - start[name] for name, (_, base) in daemons.items()) < calls:
                for name, (daemon, _) in daemons.items():
                    if daemon.poll() is not None:
                        raise SystemExit(f"the {name} daemon stopped during the idle comparison")
                time.sleep(0.2)

        start = {name: 0 for name in daemons}
        wait_for(10)
        start = {name: bench.alerts_calls(base) for name, (_, base) in daemons.items()}
        first = {name: bench.proc_sample(daemon.pid) for name, (daemon, _) in daemons.items()}
        wait_for(polls)
        last = {name: bench.proc_sample(daemon.pid) for name, (daemon, _) in daemons.items()}
        made = {name: bench.alerts_calls(base) - start[name] for name, (_, base) in daemons.items()}
    return {name: {"cpu_ms_per_poll": (last[name].cpu - first[name].cpu) * 1000 / made[name], "rss": last[name].rss,
                   "anon": last[name].anon} for name in daemons}


def row(label, before, after, unit):
    ratio = after / before if before else float("nan")
    print(f"| {label} | {before:.2f} {unit} | {after:.2f} {unit} | {ratio:.2f}x |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle-polls", type=int, default=300)
    args = parser.parse_args()
    builds = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    print(f"before: {builds['before']}\nafter: {builds['after']}")
    print("\n| figure | before | after | after / before |\n| --- | --- | --- | --- |", flush=True)
    for alerts in [int(size) for size in args.sizes.split(",") if size]:
        medians = backfill(builds, builds["after"], alerts, args.runs)
        # (Not the peak RSS: wait4's figure for a child came out the same for both builds.)
        for key, unit in (("cpu", "s"), ("wall", "s")):
            row(f"{alerts:,} alerts, {key} (median of {args.runs})", medians["before"][key], medians["after"][key], unit)
    if args.idle_polls:
        figures = idle(builds, builds["after"], args.idle_polls)
        row(f"idle, CPU per empty poll ({args.idle_polls} polls, both at once)", figures["before"]["cpu_ms_per_poll"],
            figures["after"]["cpu_ms_per_poll"], "ms")
        row("idle, RSS", figures["before"]["rss"], figures["after"]["rss"], "MiB")
        row("idle, anonymous memory", figures["before"]["anon"], figures["after"]["anon"], "MiB")


if __name__ == "__main__":
    main()
