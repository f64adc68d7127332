"""Many kiln processes on one store, some SIGKILLed: a seeded soak.

    python bench/store_stress.py [--seconds 60] [--workers 7] [--seed 7] [--keep]

For ``--seconds``, ``--workers`` threads run kiln commands on one store (builds, tag,
untag, rmi, prune, push, pull, save, load, import, export, working containers, docker-py
calls to a ``kiln serve``) while a killer SIGKILLs one of them now and then; then every
image must read back, the store check clean, and a collection leave nothing that nothing
refers to. What is run and checked lives in ``tests/store_stress.py`` (shared with
``tests/integration/test_store_stress.py``). Run as root. Prints the refusals seen (clear
errors, by message) and the problems to stderr, a summary (commands per kind, kills) to
stdout; exits 1 if any problem was found. ``--keep`` leaves the work directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the stress lives beside the CI test

import store_stress  # noqa: E402
from fixtures_images import make_busybox_rootfs  # noqa: E402
from registry_servers import start_registry  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    ap.add_argument("--workers", type=int, default=7, help="kiln processes at once (default 7)")
    ap.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--debug", action="store_true", help="kiln --debug: tracebacks shown")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="kiln-store-stress-")
    with start_registry("plain", os.path.join(work, "registry")) as reg:
        stress = store_stress.Stress(os.path.join(work, "stress"), reg.host, seed=args.seed,
                                     workers=args.workers, debug=args.debug)  # fmt: skip
        try:
            stress.setup(make_busybox_rootfs(os.path.join(work, "rootfs.tar")))
            seconds = stress.run(args.seconds)
            problems = stress.verify()
        finally:
            stress.cleanup()
            if args.keep:
                print(f"work directory kept: {work}", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    for refusal, n in stress.refusals.most_common():
        print(f"refused {n:4d}x  {refusal}", file=sys.stderr)
    for p in problems:
        print(f"PROBLEM {p}", file=sys.stderr)
    print(stress.summary(seconds) + f"; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
