"""Where a RUN step's wall time goes: one build, in-process, with its phases timed.

    python bench/run_phases.py [--steps 20] [--runs 3] [--root DIR]

Builds ``--steps`` RUN steps (``RUN echo N > /stepN``) on the bench's busybox base in a
fresh store, ``--runs`` times (each build busts the cache with a new word), wrapping the
functions a RUN goes through with timers (no code of kiln's changes). Prints, per phase,
the calls per step and the milliseconds per step, wall and CPU (kiln's process, every
thread, meanwhile), and the whole step's wall and CPU time, kiln's own apart from its
children's (runc and the command it ran); phases nest (the runtime's wait includes runc's own start-up), so they do not add
up to the step. Also counts fsync/fdatasync/syncfs calls and SQLite commits.

A tool, not a test: its numbers depend on how loaded the machine is (printed beside them).
"""

from __future__ import annotations

import argparse
import os
import shutil
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
    ("step (layer_step)", "kiln.build.stage_run", "StageRun.layer_step"),
    ("  cache key + lookup", "kiln.build.stage_run", "StageRun._next_key"),
    ("  run: Builder.run", "kiln.container.builder", "Builder.run"),
    ("    overlay mount", "kiln.container.builder", "Builder._mount"),
    ("    overlay unmount", "kiln.snapshot.mount", "unmount"),
    ("    bundle: user, mountpoints, etc files", "kiln.runtime.runc", "prepared"),
    ("    bundle: config.json", "kiln.runtime.runc", "_write_config"),
    ("    runc run (spawn)", "kiln.runtime.runc", "subprocess.Popen"),
    ("    runc run (wait for exit)", "kiln.runtime.runc", "wait_cancellable"),
    ("    runc: other calls (delete, kill)", "kiln.runtime.runc", "subprocess.run"),
    ("    prune copied-up dirs", "kiln.container.copied_up", "prune_copied_up"),
    ("    prune copied-up dirs (merged view)", "kiln.container.copied_up", "prune_unchanged"),
    ("  commit_step", "kiln.container.builder", "Builder.commit_step"),
    ("    scan upper dir", "kiln.container.commit", "scan_overlay_upper"),
    ("    tar + compress + ingest", "kiln.container.commit", "write_layer_blob"),
    ("    register image (SQLite)", "kiln.image.store_image", "register_image"),
    ("    publish: blobs, image+container+cache", "kiln.store.content", "Content.publish"),
    ("    snapshot commit (rename)", "kiln.snapshot.snapshotter", "Snapshotter.commit"),
    ("    go on from the new image (memory)", "kiln.container.builder", "Builder._go_on"),
    ("  put_cache (in the publish)", "kiln.store.cache", "BuildCache.put_cache"),
    ("stage end (finish: last commit)", "kiln.build.stage_run", "StageRun.finish"),
    ("  new working container", "kiln.container.builder", "Builder.from_image"),
    ("  commit (config-only at the end)", "kiln.container.builder", "Builder.commit"),
    ("  remove working container", "kiln.build.stage_run", "StageRun.drop_builder"),
    ("fsync/fdatasync", "os", "fsync"),
    ("fdatasync", "os", "fdatasync"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--root", default="", help="store to use (default: a fresh temporary one)")
    args = ap.parse_args()

    root = args.root or tempfile.mkdtemp(prefix="kiln-phases-")
    os.environ["KILN_ROOT"] = root
    ctx = Path(tempfile.mkdtemp(prefix="kiln-phases-ctx-"))
    try:
        subprocess.run(
            [*bl.kiln_command(), "import", "-q", str(bl.base_tar()), bl.BASE_REF],
            check=True, env=dict(os.environ), stdout=subprocess.DEVNULL,
        )  # fmt: skip
        from kiln.cli.main import main as kiln_main

        ph.install(PHASES)
        ph.count_sqlite_commits()
        walls, own, kids = [], [], []
        for run in range(args.runs):
            word = f"{os.getpid()}-{run}-{time.time_ns()}"
            steps = "".join(f"RUN echo {word} {i} > /step{i}\n" for i in range(args.steps))
            (ctx / "Dockerfile").write_text(f"FROM {bl.BASE_REF}\n{steps}")
            argv = ["build", "-q", "--runtime", "runc", "--layers=true", "--pull=never",
                    "-t", f"localhost/phases:{run}", str(ctx)]  # fmt: skip
            if run == 0:  # the first build pays imports and the first mount: untimed
                ph.run_cli(kiln_main, argv)
                ph.STATS.clear()
                continue
            own0, kids0 = ph.cpu_split()
            t = time.perf_counter()
            ph.run_cli(kiln_main, argv)
            walls.append(time.perf_counter() - t)
            own1, kids1 = ph.cpu_split()
            own.append(own1 - own0)
            kids.append(kids1 - kids0)
        steps_total = args.steps * max(1, len(walls))
        load = os.getloadavg()
        print(f"{len(walls)} build(s) of {args.steps} RUN steps; load average {load[0]:.2f} "
              f"{load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")  # fmt: skip
        per_step = 1000 / steps_total
        print(
            f"per step: wall {sum(walls) * per_step:.1f} ms, CPU "
            f"{(sum(own) + sum(kids)) * per_step:.1f} ms: kiln {sum(own) * per_step:.1f} ms, "
            f"children (runc and the command) {sum(kids) * per_step:.1f} ms"
        )
        print(f"{'phase':42s} {'calls/step':>10s} {'ms/step':>8s} {'CPU ms':>8s}")
        for label, *_ in [*PHASES, (ph.SQLITE_COMMITS,)]:
            if label not in ph.STATS:
                continue
            n, secs, cpu = ph.STATS[label]
            print(
                f"{label:42s} {n / steps_total:10.2f} {secs * per_step:8.2f} {cpu * per_step:8.2f}"
            )
    finally:
        bl.unmount_under(Path(root))
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(ctx, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
