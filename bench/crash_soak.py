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

import sys

import soak_driver

# beside the CI test: soak_driver puts tests/ on the path
import crash_trials


def main(argv: list[str] | None = None) -> int:
    args = soak_driver.options(__doc__ or "", 70).parse_args(argv)
    return soak_driver.drive(
        args,
        "crash-soak",
        lambda root, registry: crash_trials.Bench(root, registry, seed=args.seed),
        lambda bench: (crash_trials.operations(bench), bench.calibrate, bench.trial),
        crash_trials.cleanup,
    )


if __name__ == "__main__":
    sys.exit(main())
