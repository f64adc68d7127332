"""Soak: SIGKILL kiln builds at random moments, then check and repair the store.

Each trial starts a build (COPY of a few MiB, RUNs, another COPY) and kills it after a
random delay; then ``kiln system check --repair`` must exit 0, a second check must find
nothing, and every tagged image must save bit for bit as before the first trial. Prints
what each repair found (by kind), and the CPU time of a full and a quick check of the
final store. The CI test (tests/integration/test_killed_leftovers_sweep.py) runs 3 trials;
this runs as many as asked. Run as root::

    python bench/kill_soak.py --trials 50 [--seed N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    from fixtures_images import make_busybox_rootfs

    with tempfile.TemporaryDirectory(prefix="kiln-soak-") as tmp:
        work = Path(tmp)
        (work / "scratch").mkdir()
        env = dict(os.environ, KILN_ROOT=str(work / "root"), TMPDIR=str(work / "scratch"),
                   KILN_RUNTIME_DIR=str(work / "runtime"),
                   PYTHONPATH=f"{SRC}:{os.environ.get('PYTHONPATH', '')}")  # fmt: skip

        def kiln(*a: str, check: bool = True) -> subprocess.CompletedProcess:
            p = subprocess.run([sys.executable, "-m", "kiln.cli.main", *a], env=env,
                               capture_output=True, text=True, timeout=600)  # fmt: skip
            if check and p.returncode != 0:
                raise SystemExit(f"kiln {' '.join(a)} failed (seed {seed}):\n{p.stderr}")
            return p

        def saved(name: str) -> str:
            out = work / f"{name}.tar"
            kiln("save", "-o", str(out), name)
            return hashlib.sha256(out.read_bytes()).hexdigest()

        kiln("import", make_busybox_rootfs(str(work / "rootfs.tar")), "busybox")
        ctx = work / "ctx"
        ctx.mkdir()
        (ctx / "big").write_bytes(os.urandom(8 << 20))
        before = {"busybox": saved("busybox")}
        found: Counter[str] = Counter()
        for trial in range(args.trials):
            (ctx / "Containerfile").write_text(
                f"FROM busybox\nCOPY big /big\nRUN echo {trial} > /t && cat /big > /b2\n"
                "RUN sleep 0.5; rm /b2\nCOPY Containerfile /cf\n"
            )
            proc = subprocess.Popen([sys.executable, "-m", "kiln.cli.main", "build", "-t",
                                     f"t{trial}", str(ctx)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            try:
                proc.wait(timeout=rng.uniform(0.2, 5.0))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
            if proc.returncode == 0:
                before[f"t{trial}"] = saved(f"t{trial}")
            rep = json.loads(kiln("system", "check", "--repair", "--format", "json").stdout)
            found.update(f["kind"] for f in rep["findings"])
            again = json.loads(kiln("system", "check", "--format", "json").stdout)
            if again["findings"]:
                raise SystemExit(f"seed {seed} trial {trial}: not clean: {again['findings']}")
            now = {n: saved(n) for n in before}
            if now != before:
                raise SystemExit(f"seed {seed} trial {trial}: a tagged image changed")
        print(f"seed {seed}: {args.trials} trials, {len(before)} tagged images intact")
        print("repaired:", dict(sorted(found.items())) or "nothing")
        for flags in ((), ("--quick",)):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            kiln("system", "check", *flags)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
            print(f"check {' '.join(flags) or '(full)'}: wall {time.perf_counter() - t0:.2f} s, "
                  f"cpu {cpu:.2f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
