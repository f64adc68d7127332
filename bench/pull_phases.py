"""What a pull waits for, thread by thread: its own work, a CPU, or something else.

    python bench/pull_phases.py [--runs 3] [--kiln-src SRC]

Pushes the pull scenario's image (92 files of 1 MB random data on the bench's busybox
base, as ``build_bench.py``'s ``pull``) to a private registry on 127.0.0.1 once, then
pulls it ``--runs`` times into empty stores, each pull a fresh process importing kiln
from ``--kiln-src`` (default: this checkout's). Every thread of the pull reports, from
the kernel's scheduler statistics (``/proc/self/task/TID/schedstat``), how long it ran
on a CPU, how long it waited for one while runnable (the run queue), and how long it
was blocked (the network, the disk, a lock, the next stage's queue): wall = on CPU +
run queue + blocked. The main thread's row counts from the interpreter's start, the
others from their own. Per thread name, the busiest thread of each run is kept (a pull
runs one unpack, ingest and worker thread per blob); medians over the runs are printed.

A thread that is the pull's bottleneck is never blocked: its wall is its CPU time plus
its run-queue wait, so on a loaded machine the run-queue column says how much of the
pull's wall time is the machine's, not kiln's. A tool, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402
import build_bench as bb  # noqa: E402

# run in the pull's own process: time every thread from the scheduler's counters
HARNESS = r"""
import json, os, sys, threading, time

def sched():
    with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
        on_cpu, queued, _ = f.read().split()
    return int(on_cpu) / 1e9, int(queued) / 1e9

rows, lock = [], threading.Lock()
original = threading.Thread.run

def run(self):
    t0, (c0, q0) = time.monotonic(), sched()
    try:
        original(self)
    finally:
        (c1, q1), wall = sched(), time.monotonic() - t0
        with lock:
            rows.append([self.name, wall, c1 - c0, q1 - q0])

threading.Thread.run = run
from kiln.cli.main import main
try:
    main(["pull", "-q", "--tls-verify=false", sys.argv[1]])
except SystemExit as exc:
    if exc.code:
        raise
with open("/proc/self/stat") as f:  # the interpreter's start, in clock ticks since boot
    start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
with open("/proc/uptime") as f:
    since_start = float(f.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
c, q = sched()
rows.append(["main (from start)", since_start, c, q])
print(json.dumps(rows))
"""


def one_pull(ref: str, src: str, deferred: bl.Deferred) -> list[list]:
    """One pull into an empty store (deleted when the runs are over, as the benches do)."""
    tool = bl.Kiln(bl.scratch("kb-pullph-"))
    deferred.add(tool)
    env = {**tool.env, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", HARNESS, ref],
        env=env, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def busiest(rows: list[list]) -> dict[str, list[float]]:
    """Per thread name (pool workers' numbers dropped), the row with the most CPU time."""
    best: dict[str, list[float]] = {}
    for name, wall, cpu, queued in rows:
        key = name.rsplit("_", 1)[0] if name.startswith("kiln-pull_") else name
        if key not in best or cpu > best[key][1]:
            best[key] = [wall, cpu, queued, wall - cpu - queued]
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--kiln-src",
        default=str(Path(__file__).resolve().parents[1] / "src"),
        help="the kiln source tree the pulls import (default: this checkout's src)",
    )
    args = ap.parse_args()
    bl.use_kiln_bytecode(True)
    deferred = bl.Deferred()
    runs: list[dict[str, list[float]]] = []
    try:
        with bb.local_registry(bb.ctx_push(bb.PUSH_FILES), deferred) as registry:
            one_pull(
                registry.pull_ref, args.kiln_src, deferred
            )  # untimed: fills the bytecode cache
            for i in range(args.runs):
                runs.append(busiest(one_pull(registry.pull_ref, args.kiln_src, deferred)))
                bl.log(f"pull {i + 1}/{args.runs} done; {bl.load_line()}")
    finally:
        deferred.flush()
    names = sorted({n for r in runs for n in r}, key=lambda n: -statistics.median(
        r[n][0] for r in runs if n in r))  # fmt: skip
    rows = [["thread (busiest of its name)", "wall", "on CPU", "run queue", "blocked"]]
    for name in names:
        got = [r[name] for r in runs if name in r]
        rows.append([name, *(f"{statistics.median(g[k] for g in got):.3f}" for k in range(4))])
    print(
        f"{len(runs)} pull(s) of a {bb.PUSH_FILES} MB image; medians in seconds; {bl.load_line()}"
    )
    print(bl.table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
