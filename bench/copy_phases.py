"""Where a COPY step's time goes: one build per run, in-process, with its phases timed.

    python bench/copy_phases.py [--files 20000] [--size BYTES] [--runs 3] [--dir DIR]

Two inputs, as ``build_bench.py``'s ``files20k`` and ``bigfile`` scenarios: ``--files``
files of 256 B (``COPY files /files``) and one random file of ``--size`` bytes (default
1 GiB; ``COPY big.bin /big.bin``); ``--files 0`` or ``--size 0`` skips one. Each run builds
into a fresh store (a first build: no cache hit), with the functions a COPY goes through
wrapped with timers (no code of kiln's changes). Prints, per phase, its wall time and the
CPU time the whole process (every thread) spent meanwhile, the build's wall, CPU and peak
RSS, the machine's load, and the cost of creating an empty file in a directory beside
the store at that moment (on a file system without a journal, ext4 skips inodes freed in
the last ~30 s when it allocates one, so a disk where others just deleted many files makes
every new file cost far more; that cost is the file system's, not kiln's). Phases nest,
so they do not add up to the build.

A tool, not a test: its numbers depend on how loaded the machine is (printed beside them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402
import phases as ph  # noqa: E402

# (label, module, attribute): see phases.py
PHASES = [
    ("context digest (cache key)", "kiln.build.context", "BuildContext.digest"),
    ("new working container", "kiln.container.builder", "Builder.from_image"),
    ("overlay mount", "kiln.container.builder", "Builder._mount"),
    ("copy into the rootfs", "kiln.container.builder", "copy_into"),
    ("direct: list the layer (no files made)", "kiln.build.copy_direct", "plan_direct"),
    ("direct: commit without a container", "kiln.build.stage_run", "StageRun._commit_here"),
    ("overlay unmount", "kiln.snapshot.mount", "unmount"),
    ("commit_step", "kiln.container.builder", "Builder.commit_step"),
    ("  tar + hash + compress + ingest", "kiln.container.commit", "write_layer_blob"),
    ("  publish: fsync blobs + image rows", "kiln.store.content", "Content.publish"),
    ("  snapshot commit (rename)", "kiln.snapshot.snapshotter", "Snapshotter.commit"),
    ("  fsync/syncfs of the upper (thread)", "kiln.container.commit", "fsync_tree"),
    ("stage end (finish)", "kiln.build.stage_run", "StageRun.finish"),
]


def _contexts(files: int, size: int) -> list[tuple[str, Path]]:
    found = []
    base = f"FROM {bl.BASE_REF}\n"
    if files:
        ctx = bl.data_dir() / f"ctx-files{files}"
        bl.small_files(ctx / "files", files)
        (ctx / "Dockerfile").write_text(base + "COPY files /files\n")
        found.append((f"{files:,} files of 256 B", ctx))
    if size:
        ctx = bl.data_dir() / "ctx-bigfile"
        bl.random_file(ctx / "big.bin", size)
        (ctx / "Dockerfile").write_text(base + "COPY big.bin /big.bin\n")
        found.append((f"one {size / 2**30:g} GiB file", ctx))
    return found


def _build(kiln_main, work: Path, ctx: Path, tag: str) -> tuple[float, float]:
    """A first build of ``ctx`` in a fresh store under ``work``: (wall, CPU) seconds. The
    store stays until ``work`` goes (a deletion would charge the next build for it)."""
    root = work / f"root-{time.time_ns()}"
    os.environ["KILN_ROOT"] = str(root)
    subprocess.run([*bl.kiln_command(), "import", "-q", str(bl.base_tar()), bl.BASE_REF],
                   check=True, env=dict(os.environ), stdout=subprocess.DEVNULL)  # fmt: skip
    argv = ["build", "-q", "--runtime", "runc", "--layers=true", "--pull=never",
            "-t", tag, str(ctx)]  # fmt: skip
    try:
        cpu0, t = ph.cpu_seconds(), time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the image ID is not shown
            ph.run_cli(kiln_main, argv)
        return time.perf_counter() - t, ph.cpu_seconds() - cpu0
    finally:
        bl.unmount_under(root)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=1 << 30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/tmp", help="where the stores go (default /tmp)")
    ap.add_argument("--settle", type=float, default=10.0,
                    help="seconds to wait after deleting one input's stores (default 10)")  # fmt: skip
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kiln-copy-phases-", dir=args.dir))
    deferred = bl.Deferred()
    try:
        from kiln.cli.main import main as kiln_main

        warm = work / "ctx-warm"
        warm.mkdir()
        (warm / "f").write_text("warm\n")
        (warm / "Dockerfile").write_text(f"FROM {bl.BASE_REF}\nCOPY f /f\n")
        _build(kiln_main, work, warm, "localhost/copy-phases:warm")  # imports: untimed
        ph.install(PHASES)
        for what, ctx in _contexts(args.files, args.size):
            ph.STATS.clear()
            walls, cpus, probes = [], [], []
            deferred.flush(args.settle)  # the last input's stores, before these runs
            runs_dir = Path(tempfile.mkdtemp(prefix="runs-", dir=work))
            deferred.add(runs_dir)
            for run in range(args.runs):
                probes.append(bl.create_probe(runs_dir, 2000, fsync=False).create_us)
                wall, cpu = _build(kiln_main, runs_dir, ctx, f"localhost/copy-phases:{run}")
                walls.append(wall)
                cpus.append(cpu)
            runs = max(1, len(walls))
            load = os.getloadavg()
            print(f"\nCOPY of {what}: {runs} first build(s); load average {load[0]:.2f} "
                  f"{load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")  # fmt: skip
            print(f"build: wall median {statistics.median(walls):.2f} s, CPU (kiln + children) "
                  f"median {statistics.median(cpus):.2f} s; peak RSS of the process so far "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")  # fmt: skip
            print(f"creating an empty file beside the store: {statistics.median(probes):.0f} us "
                  f"(median of {len(probes)} probes of 2,000)")  # fmt: skip
            print(f"{'phase (mean per build)':38s} {'calls':>6s} {'wall s':>8s} {'CPU s':>8s}")
            for label, *_ in PHASES:
                if label in ph.STATS:
                    n, secs, cpu = ph.STATS[label]
                    print(f"{label:38s} {n / runs:6.1f} {secs / runs:8.3f} {cpu / runs:8.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
