"""The driver both soaks share (``crash_soak.py``: SIGKILL; ``interrupt_fuzz.py``: SIGINT and
SIGTERM): their common options, a store and a private docker-registry in a scratch directory,
the seeded trials one operation after another, a line per trial on stderr and the summary on
stdout. What a trial does and checks lives in the soak's module under ``tests/``."""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the trials live beside the CI tests

import crash_trials  # noqa: E402

#: what a soak picks once its bench is set up: the operations, how to calibrate them (each
#: run once, its time bounding the moments), and a trial (operation, number) -> problems
Plan = tuple[Sequence[Any], Callable[[Sequence[Any]], None], Callable[[Any, int], list[str]]]


def options(doc: str, trials: int) -> argparse.ArgumentParser:
    """The options every soak takes; a soak adds its own."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--trials", type=int, default=trials, help=f"trials in all (default {trials})")
    ap.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    ap.add_argument("--ops", default="", help="comma list of operations (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--stop-on-failure", action="store_true")
    return ap


def drive(
    args: argparse.Namespace,
    name: str,
    make_bench: Callable[[str, str], Any],
    plan: Callable[[Any], Plan],
    cleanup: Callable[[Any], None],
    summary: Callable[[Any], str] = lambda bench: "",
) -> int:
    """Run ``args.trials`` trials; 1 if any found a problem."""
    os.environ.setdefault("KILN_RUNC_ADVISORY", "ignore")
    work = tempfile.mkdtemp(prefix=f"kiln-{name}-")
    failures: list[str] = []
    trials: collections.Counter[str] = collections.Counter()
    t0 = time.monotonic()

    def finish(bench: Any) -> None:
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            cleanup(bench)

    with crash_trials.bench_with_registry(work, make_bench, finish) as bench:
        ops, calibrate, trial = plan(bench)
        if args.ops:
            wanted = set(args.ops.split(","))
            ops = [op for op in ops if op.name in wanted]
        calibrate(ops)
        print(f"seed {args.seed}; durations "
              + ", ".join(f"{op.name} {op.duration:.2f}s" for op in ops), file=sys.stderr)  # fmt: skip
        for n in range(args.trials):
            op = ops[n % len(ops)]
            problems = trial(op, n)
            trials[op.name] += 1
            print(("FAIL " if problems else "ok   ") + bench.log[-1], file=sys.stderr)
            for p in problems:
                print("     " + p, file=sys.stderr)
            failures += problems
            if problems and args.stop_on_failure:
                break
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - t0
    print(f"{sum(trials.values())} trials in {elapsed:.0f} s (seed {args.seed}): "
          f"{len(failures)} problems; {summary(bench)}" + ", ".join(f"{k} {v}" for k, v in trials.items()))  # fmt: skip
    for p in failures:
        print(p)
    return 1 if failures else 0
