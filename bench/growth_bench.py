"""How COPY grows with the context: time should grow linearly and peak RSS stay flat.

    python bench/growth_bench.py [--runs N] [--files 20000,200000] [--gib 1,4]
                                 [--peers buildkit,buildah] [--no-rebuild] [--kiln-base SRC]
                                 [--dockerignore]

Two series, each a fresh store per run with the busybox base loaded (untimed):

- files: ``COPY files /files`` of N files of 256 B (500 per directory), then the same
  build again with nothing changed (``noop``: the stat-keyed checksum cache at work);
  with ``--dockerignore`` the context also has a ``.dockerignore`` (``**/*.log``, which
  matches none of the files: every path is matched, nothing is left out);
- bytes: ``COPY big.bin /big.bin`` of one random file of N GiB.

For every build it records wall time, CPU time (user + sys of the build process and its
children, from ``wait4``), peak RSS and what it read from the disk (``ru_inblock``: wall
time beyond CPU time that is not waiting for a core is mostly inodes, directories and the
checksum index evicted from the page cache by other work), and prints them with the
machine's load average beside them (the machine may be shared: CPU time is the steadier
number). After the
table it prints the growth: the ratio of time (and CPU) per file or per GiB between the
largest and smallest point (1.00 = perfectly linear) and the largest peak RSS; targets:
time per unit within 1.5x of the smallest point, RSS at most 200 MB, a no-op rebuild of
the largest file count within 0.5 s. Writes bench/results/<stamp>-growth.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402

FROM = f"FROM {bl.BASE_REF}\n"
RSS_TARGET_MB = 200
LINEAR_TARGET = 1.5  # time per unit at the largest point / at the smallest
NOOP_TARGET = 0.5  # seconds: rebuild of the largest file context, nothing changed
IGNORE = False  # --dockerignore: the files contexts have a .dockerignore


def ctx_files(count: int) -> Path:
    ctx = bl.data_dir() / f"ctx-growth-files{count}"
    bl.small_files(ctx / "files", count)
    ignore = ctx / ".dockerignore"
    if IGNORE and not ignore.exists():
        ignore.write_text("**/*.log\n")
    elif not IGNORE and ignore.exists():
        ignore.unlink()
    return _dockerfile(ctx, FROM + "COPY files /files\n")


def ctx_bytes(gib: int) -> Path:
    ctx = bl.data_dir() / f"ctx-growth-{gib}g"
    bl.random_file(ctx / "big.bin", gib << 30)
    return _dockerfile(ctx, FROM + "COPY big.bin /big.bin\n")


def _dockerfile(ctx: Path, text: str) -> Path:
    path = ctx / "Dockerfile"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return ctx


def load() -> float:
    return os.getloadavg()[0]


def measured(argv: list[str], env: dict, log: Path, timeout: float = 3600) -> dict:
    """Run ``argv``; its wall time, CPU time (user+sys, children included), peak RSS and
    the MB it read from the disk."""
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)  # fmt: skip
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                proc.wait()
                raise bl.BenchError(f"timed out after {timeout} s: {' '.join(argv)}")
            time.sleep(0.01)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_bytes()[-3000:].decode(errors="replace")
        raise bl.BenchError(f"exit {proc.returncode}: {' '.join(argv)}\n{tail}")
    # ru_maxrss of wait4 is the largest of the process and its waited-for descendants
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "load": load(),
            "read_mb": usage.ru_inblock * 512 / 2**20}  # fmt: skip


def _measure(tool, argv: list[str], log: Path) -> dict:
    """``measured`` for a CLI doing its own work; BuildKit's work is done by its daemon,
    whose CPU and RSS its own ``measure`` counts."""
    if not isinstance(tool, bl.BuildKit):
        return measured(argv, tool.env, log)
    sample = tool.measure(argv, log=log)
    return {
        "wall": sample.wall,
        "cpu": sample.cpu,
        "rss_mb": sample.rss / 2**20,
        "load": load(),
        "read_mb": 0.0,
    }  # the daemon reads: not counted


def one(tool_name: str, ctx: Path, noop: bool, deferred: bl.Deferred) -> dict[str, dict]:
    """One first build (and its no-op rebuild) in a fresh store, kept until the point's
    runs are over (``deferred``)."""
    tool = bl.TOOLS[tool_name](bl.scratch(f"kg-{tool_name[:2]}-"))
    deferred.add(tool)
    tool.load_base(bl.base_tar())
    argv = tool.build_argv(ctx, "localhost/growth:latest", no_cache=tool.shared_store)
    out = {"build": _measure(tool, argv, tool.work / "build.log")}
    if noop:
        argv = tool.build_argv(ctx, "localhost/growth:latest")
        out["noop"] = _measure(tool, argv, tool.work / "noop.log")
    return out


def series(kind: str, points: list[int], tools: list[str], runs: int, noop: bool,
           deferred: bl.Deferred, settle: float) -> list[dict]:  # fmt: skip
    rows = []
    for point in points:
        ctx = ctx_files(point) if kind == "files" else ctx_bytes(point)
        deferred.flush(settle)  # the last point's stores: deleted before, not between, runs
        probe_dir = bl.scratch("kg-probe-")  # the probes' files go with the point's stores
        deferred.add(probe_dir)
        for rep in range(runs):
            order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
            for t in order:
                bl.log(f"== {kind} {point} run {rep + 1} {t} (load {load():.1f})")
                try:
                    probe = bl.create_probe(probe_dir)
                    bl.log(f"   {bl.probe_line(probe)}")
                    res = one(t, ctx, noop and kind == "files", deferred)
                except bl.BenchError as exc:
                    bl.log(f"   FAILED\n{exc}")
                    continue
                for phase, m in res.items():
                    rows.append({"series": kind, "point": point, "tool": t, "phase": phase,
                                 **m, "probe_us": [probe.create_us, probe.fsync_us]})  # fmt: skip
                    bl.log(f"   {phase:5s} wall {m['wall']:7.2f} s  cpu {m['cpu']:7.2f} s  "
                           f"rss {m['rss_mb']:6.0f} MB  read {m['read_mb']:6.1f} MB  "
                           f"load {m['load']:.1f}")  # fmt: skip
    return rows


def medians(rows: list[dict]) -> dict[tuple, dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["series"], r["point"], r["tool"], r["phase"]), []).append(r)
    return {
        k: {
            m: bl.median([r.get(m, 0.0) for r in v])
            for m in ("wall", "cpu", "rss_mb", "read_mb", "load")
        }
        for k, v in groups.items()
    }


def growth(meds: dict[tuple, dict]) -> list[str]:
    """Per-unit cost at the largest point over the smallest, per series, tool and phase."""
    lines, ok = [], True
    keys = sorted({(s, t, p) for s, _, t, p in meds})
    for s, t, p in keys:
        pts = sorted(pt for (s2, pt, t2, p2) in meds if (s2, t2, p2) == (s, t, p))
        lo, hi = meds[(s, pts[0], t, p)], meds[(s, pts[-1], t, p)]
        scale = pts[-1] / pts[0]
        if scale > 1 and p == "build":
            for m in ("wall", "cpu"):
                r = hi[m] / lo[m] / scale if lo[m] else float("inf")
                good = r <= LINEAR_TARGET
                ok &= good or t != "kiln"
                lines.append(f"{t} {s} {p}: {m} per unit x{r:.2f} from {pts[0]} to {pts[-1]}"
                             f" {'ok' if good else 'NOT LINEAR'}")  # fmt: skip
        rss = max(meds[(s, pt, t, p)]["rss_mb"] for pt in pts)
        good = rss <= RSS_TARGET_MB
        ok &= good or t != "kiln"
        lines.append(f"{t} {s} {p}: peak RSS {rss:.0f} MB {'ok' if good else 'OVER'}")
        if t == "kiln" and p == "noop":
            wall = hi["wall"]
            good = wall <= NOOP_TARGET
            ok &= good
            lines.append(f"kiln {s} noop at {pts[-1]}: {wall:.2f} s (target {NOOP_TARGET} s) "
                         f"{'ok' if good else 'MISSED'}")  # fmt: skip
    lines.append("all growth targets met" if ok else "some growth targets missed")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="repetitions per point and tool")
    ap.add_argument("--files", default="20000,200000", help="file counts of the files series")
    ap.add_argument("--gib", default="1,4", help="GiB of the bytes series ('' to skip)")
    ap.add_argument("--peers", default="", help="peers to run beside kiln (e.g. buildah)")
    ap.add_argument("--no-rebuild", action="store_true", help="skip the no-op rebuilds")
    ap.add_argument("--dockerignore", action="store_true",
                    help="give the files contexts a .dockerignore (every path is matched)")  # fmt: skip
    ap.add_argument("--settle", type=float, default=10.0,
                    help="seconds to wait after deleting one point's stores (default 10)")  # fmt: skip
    bl.add_bytecode_flag(ap)
    bl.add_kiln_base_flag(ap)
    args = ap.parse_args()
    global IGNORE  # noqa: PLW0603 (one switch for the contexts this run makes)
    IGNORE = args.dockerignore
    bl.use_kiln_bytecode(not args.kiln_no_bytecode_cache)
    base = bl.use_kiln_base(args.kiln_base)
    tools = ["kiln", *base, *bl.installed_peers([p for p in args.peers.split(",") if p])]
    files = [int(x) for x in args.files.split(",") if x]
    gib = [int(x) for x in args.gib.split(",") if x]

    deferred = bl.Deferred()
    with contextlib.ExitStack() as stack:
        if "buildkit" in tools:
            bl.log("starting a private dockerd (BuildKit)")
            bl.BuildKit.start_daemon()
            stack.callback(bl.BuildKit.stop_daemon)
        stack.callback(deferred.flush)  # while the daemon still runs (BuildKit's cleanup)
        bl.log("warming up kiln (untimed)")
        bl.warm_up_kiln(ctx_files(files[0]) if files else ctx_bytes(gib[0]), deferred)
        rows = series("files", files, tools, args.runs, not args.no_rebuild, deferred,
                      args.settle)  # fmt: skip
        rows += series("bytes", gib, tools, args.runs, False, deferred, args.settle)
    meds = medians(rows)
    table = [["series", "point", "tool", "phase", "wall s", "cpu s", "rss MB", "read MB",
              "load"]]  # fmt: skip
    for (s, pt, t, p), m in sorted(meds.items()):
        table.append([s, str(pt), t, p, f"{m['wall']:.2f}", f"{m['cpu']:.2f}",
                      f"{m['rss_mb']:.0f}", f"{m['read_mb']:.1f}", f"{m['load']:.1f}"])  # fmt: skip
    print(bl.table(table))
    print()
    lines = growth(meds)
    for line in lines:
        print(line)
    path = bl.write_json("growth", {"rows": rows, "growth": lines})
    bl.log(f"results: {path}")
    return 0 if lines[-1] == "all growth targets met" else 1


if __name__ == "__main__":
    sys.exit(main())
