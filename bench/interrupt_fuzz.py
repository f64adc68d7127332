"""Interrupt fuzzer: SIGINT and SIGTERM at random moments of build (FROM, RUN, COPY of many
files and of one big file, multi-stage, --jobs 2), pull, push, save, load, import, export,
from, run, copy, commit, system prune and rmi, against one store and a private
docker-registry; and Ctrl-C at random moments of library calls in a script.

    python bench/interrupt_fuzz.py --trials 200 [--seed 7] [--ops build-run,pull] [--keep]
    python bench/interrupt_fuzz.py --library --trials 60 [--seed 7] [--ops build-run]
    python bench/interrupt_fuzz.py --library --lines --trials 60 [--seed 7]

Each trial prepares the store, starts the operation, sends SIGINT or SIGTERM (to the kiln
process or its process group) after a random delay within its measured duration, and then
checks that it stopped as promised (exit 130/143 with its one error line, no traceback,
within a few seconds; or exit 0 if it had finished) and, before any other kiln command
sweeps, left nothing: no mount, RUN bundle or process, runc container, temp file, staged
layer, ingest, lease, build container or partial output; ``kiln system check`` and the
store's fsck clean; every tagged image reads back; the same operation works again. With
``--library`` a script calls the library, Ctrl-C lands in its main thread, and the script
checks the same once the call has raised, then calls it again; with ``--lines`` the Ctrl-C
is a real SIGINT at a random point of kiln's code in the call's main thread where one can land
(after a call returns: ``tests/ctrl_c_anywhere.py``), so that a moment of a few microseconds is
as likely as a long wait.

What is checked lives in ``tests/interrupt_trials.py`` (shared with the CI test
``tests/integration/test_interrupt_trials.py``). Run as root, one at a time (CPU-bound).
Prints one line per trial to stderr and a summary (trials, failures, trials per operation)
to stdout; exits 1 if any trial found a problem. ``--keep`` leaves the work directory.
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

import interrupt_trials  # noqa: E402
from fixtures_images import make_busybox_rootfs  # noqa: E402
from registry_servers import start_registry  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=72, help="trials in all (default 72)")
    ap.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    ap.add_argument("--ops", default="", help="comma list of operations (default: all)")
    ap.add_argument("--library", action="store_true", help="library calls, not the CLI")
    ap.add_argument("--lines", action="store_true",
                    help="library: Ctrl-C at a random point of the call, not time")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--stop-on-failure", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("KILN_RUNC_ADVISORY", "ignore")
    work = tempfile.mkdtemp(prefix="kiln-interrupt-fuzz-")
    failures: list[str] = []
    trials: collections.Counter[str] = collections.Counter()
    t0 = time.monotonic()
    with start_registry("plain", os.path.join(work, "registry")) as reg:
        bench = interrupt_trials.Bench(os.path.join(work, "bench"), reg.host, seed=args.seed)
        bench.at_lines = args.lines
        try:
            bench.setup(make_busybox_rootfs(os.path.join(work, "rootfs.tar")))
            if args.library:
                ops = interrupt_trials.library_operations(bench)
                run = bench.library_trial
            else:
                ops = interrupt_trials.operations(bench)
                run = bench.trial
            if args.ops:
                wanted = set(args.ops.split(","))
                ops = [op for op in ops if op.name in wanted]
            if args.library:
                bench.calibrate_library(ops)
            else:
                bench.calibrate(ops)
            print(f"seed {args.seed}; durations "
                  + ", ".join(f"{op.name} {op.duration:.2f}s" for op in ops), file=sys.stderr)  # fmt: skip
            for n in range(args.trials):
                op = ops[n % len(ops)]
                problems = run(op, n)  # type: ignore[arg-type]
                trials[op.name] += 1
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
                interrupt_trials.cleanup(bench)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - t0
    print(f"{sum(trials.values())} trials in {elapsed:.0f} s (seed {args.seed}): "
          f"{len(failures)} problems; {bench.early} signalled before kiln's main ran; " + ", ".join(f"{k} {v}" for k, v in trials.items()))  # fmt: skip
    for p in failures:
        print(p)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
