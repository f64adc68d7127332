"""SIGKILL soak: many seeded kill trials of build (RUN, COPY), pull, push, load, commit,
prune and rmi against one store and a private docker-registry.

    python bench/crash_soak.py --trials 200 [--seed 7] [--ops build,pull] [--keep]

Each trial prepares the store, kills the operation at a random moment within its measured
duration (the kiln process alone or its process group) and then checks, after the next
kiln command: no mount, RUN bundle, running RUN container, temp dir or build container
left; the store's fsck clean; every tagged image unchanged (names the operation does not
touch) and readable (validated blob by blob, unpacked layers against their diff IDs).
What is checked lives in ``tests/crash_trials.py`` (shared with the CI test
``tests/integration/test_crash_trials.py``). Run as root. Prints one line per trial to
stderr and a summary (trials, failures, kills per operation) to stdout; exits 1 if any
trial found a problem. ``--keep`` leaves the work directory for a look after a failure.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the trials live beside the CI test

import crash_trials  # noqa: E402
from fixtures_images import make_busybox_rootfs  # noqa: E402
from registry_servers import start_registry  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=70, help="kill trials in all (default 70)")
    ap.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    ap.add_argument("--ops", default="", help="comma list of operations (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--stop-on-failure", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("KILN_RUNC_ADVISORY", "ignore")
    work = tempfile.mkdtemp(prefix="kiln-crash-soak-")
    failures: list[str] = []
    kills: collections.Counter[str] = collections.Counter()
    t0 = time.monotonic()
    with start_registry("plain", os.path.join(work, "registry")) as reg:
        bench = crash_trials.Bench(os.path.join(work, "bench"), reg.host, seed=args.seed)
        try:
            bench.setup(make_busybox_rootfs(os.path.join(work, "rootfs.tar")))
            ops = crash_trials.operations(bench)
            if args.ops:
                wanted = set(args.ops.split(","))
                ops = [op for op in ops if op.name in wanted]
            bench.calibrate(ops)
            print(f"seed {args.seed}; durations "
                  + ", ".join(f"{op.name} {op.duration:.2f}s" for op in ops), file=sys.stderr)  # fmt: skip
            for n in range(args.trials):
                op = ops[n % len(ops)]
                problems = bench.trial(op, n)
                kills[op.name] += 1
                print(("FAIL " if problems else "ok   ") + bench.log[-1], file=sys.stderr)
                for p in problems:
                    print("     " + p, file=sys.stderr)
                failures += problems
                if problems and args.stop_on_failure:
                    break
        finally:
            if args.keep:
                print(f"work directory kept: {work}", file=sys.stderr)
            else:
                crash_trials.cleanup(bench)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - t0
    print(f"{sum(kills.values())} trials in {elapsed:.0f} s (seed {args.seed}): "
          f"{len(failures)} problems; " + ", ".join(f"{k} {v}" for k, v in kills.items()))  # fmt: skip
    for p in failures:
        print(p)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
