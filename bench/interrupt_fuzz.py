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

import sys
from typing import Any

import soak_driver

# beside the CI test: soak_driver puts tests/ on the path
import interrupt_trials


def main(argv: list[str] | None = None) -> int:
    ap = soak_driver.options(__doc__ or "", 72)
    ap.add_argument("--library", action="store_true", help="library calls, not the CLI")
    ap.add_argument("--lines", action="store_true",
                    help="library: Ctrl-C at a random point of the call, not time")  # fmt: skip
    args = ap.parse_args(argv)

    def make_bench(root: str, registry: str) -> Any:
        bench = interrupt_trials.Bench(root, registry, seed=args.seed)
        bench.at_lines = args.lines
        return bench

    def plan(bench: Any) -> soak_driver.Plan:
        if args.library:
            ops = interrupt_trials.library_operations(bench)
            return ops, bench.calibrate_library, bench.library_trial
        return interrupt_trials.operations(bench), bench.calibrate, bench.trial

    return soak_driver.drive(
        args,
        "interrupt-fuzz",
        make_bench,
        plan,
        interrupt_trials.cleanup,
        lambda bench: f"{bench.early} signalled before kiln's main ran; ",
    )


if __name__ == "__main__":
    sys.exit(main())
