"""kiln push/pull against `skopeo copy`, on the same local registry (Debian's docker-registry).

Two images are made in a kiln store: 20,000 small files in one layer, and 1 GiB of
random data in one layer. Each is exported once to an OCI layout (the same blobs),
which is skopeo's source. Every run starts a fresh registry (so neither tool finds
blobs left by an earlier run) and times:

    push   kiln push IMAGE docker://R/bench/kiln-X      skopeo copy oci:DIR:X docker://R/bench/skopeo-X
    pull   kiln pull R/bench/kiln-X (empty store)     skopeo copy docker://R/bench/kiln-X oci:EMPTY:X

Prints the median of RUNS runs and the kiln/skopeo ratio (below 1: kiln is faster).
kiln runs with a bytecode cache in the work directory, as an installed kiln has one
(with PYTHONDONTWRITEBYTECODE set, a source checkout would otherwise compile every
module on every run; --no-bytecode-cache measures that).
Usage: python bench/registry_vs_skopeo.py [--runs 3] [--files 20000] [--big-mib 1024]
Needs docker-registry, skopeo and the kiln command on PATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import registry_servers  # noqa: E402

MTIME = 1_700_000_000


def _kiln_binary() -> str:
    """The kiln console script itself (a pyenv shim would add its own startup to each run)."""
    found = shutil.which("kiln") or "kiln"
    if "/shims/" in found:
        out = subprocess.run(["pyenv", "which", "kiln"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return found


KILN = _kiln_binary()


def sh(*args: str, env: dict | None = None) -> float:
    if args[0] == "kiln":
        args = (KILN, *args[1:])
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
    return took


def small_files_tar(path: str, count: int) -> None:
    import io

    with tarfile.open(path, "w") as tar:
        for d in range(count // 500 + 1):
            info = tarfile.TarInfo(f"data/d{d:03d}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for i in range(count):
            data = f"file {i}\n".encode() * 8
            info = tarfile.TarInfo(f"data/d{i // 500:03d}/f{i:05d}.txt")
            info.size, info.mtime = len(data), MTIME
            tar.addfile(info, io.BytesIO(data))


def big_tar(path: str, mib: int) -> None:
    with tarfile.open(path, "w") as tar, open("/dev/urandom", "rb") as src:
        info = tarfile.TarInfo("random.bin")
        info.size, info.mtime = mib << 20, MTIME
        tar.addfile(info, src)


def warm_bytecode_cache(env: dict, prefix: str) -> None:
    """Point kiln's interpreter at a writable bytecode cache and fill it."""
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = prefix
    python = sys.executable
    with open(KILN) as f:  # the console script's interpreter, if it names one
        first = f.readline()
    if first.startswith("#!") and os.path.exists(first[2:].strip()):
        python = first[2:].strip()
    code = (
        "import compileall, os, kiln; compileall.compile_dir(os.path.dirname(kiln.__file__), "
        "quiet=1); import kiln.cli.main, kiln.ops.registry, kiln.image.registry_source, "
        "kiln.image.registry_sink, kiln.cli.commands.pull, kiln.cli.commands.push, httpx; "
        "httpx.Client()"
    )
    subprocess.run([python, "-c", code], env=env, check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--no-bytecode-cache", action="store_true")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="kiln-bench-", dir=args.workdir)
    try:
        root = os.path.join(work, "kiln-root")
        env = dict(os.environ, KILN_REGISTRIES_CONF=os.path.join(work, "registries.conf"))
        with open(env["KILN_REGISTRIES_CONF"], "w") as f:
            f.write('unqualified-search-registries = ["docker.io"]\n')
        if not args.no_bytecode_cache:
            warm_bytecode_cache(env, os.path.join(work, "pycache"))
        images = {}
        for name, make in (
            ("files", lambda p: small_files_tar(p, args.files)),
            ("big", lambda p: big_tar(p, args.big_mib)),
        ):
            tar = os.path.join(work, f"{name}.tar")
            make(tar)
            sh("kiln", "--root", root, "import", tar, f"bench/{name}:1", env=env)
            os.unlink(tar)
            layout = os.path.join(work, f"layout-{name}")
            sh("kiln", "--root", root, "push", f"bench/{name}:1", f"oci:{layout}:{name}", env=env)
            images[name] = layout
        label = {"files": f"{args.files} small files", "big": f"{args.big_mib} MiB random"}
        times: dict[tuple[str, str, str], list[float]] = {}
        for run in range(args.runs):
            with registry_servers.start_registry("plain", os.path.join(work, f"reg{run}")) as reg:
                for name, layout in images.items():
                    kref = f"{reg.host}/bench/kiln-{name}:1"
                    sref = f"{reg.host}/bench/skopeo-{name}:1"
                    t = sh(
                        "kiln",
                        "--root",
                        root,
                        "push",
                        "--tls-verify=false",
                        f"bench/{name}:1",
                        f"docker://{kref}",
                        env=env,
                    )
                    times.setdefault((name, "push", "kiln"), []).append(t)
                    t = sh(
                        "skopeo",
                        "copy",
                        "-q",
                        "--dest-tls-verify=false",
                        f"oci:{layout}:{name}",
                        f"docker://{sref}",
                    )
                    times.setdefault((name, "push", "skopeo"), []).append(t)
                    fresh = os.path.join(work, f"pull-{run}-{name}")
                    t = sh("kiln", "--root", fresh, "pull", "--tls-verify=false", kref, env=env)
                    times.setdefault((name, "pull", "kiln"), []).append(t)
                    shutil.rmtree(fresh)
                    t = sh(
                        "skopeo",
                        "copy",
                        "-q",
                        "--src-tls-verify=false",
                        f"docker://{kref}",
                        f"oci:{fresh}:{name}",
                    )
                    times.setdefault((name, "pull", "skopeo"), []).append(t)
                    shutil.rmtree(fresh)
            shutil.rmtree(os.path.join(work, f"reg{run}"), ignore_errors=True)
        print(f"median of {args.runs} runs, seconds (ratio = kiln / skopeo; <= 1 meets the target)")
        print(f"{'image':<22}{'op':<6}{'kiln':>8}{'skopeo':>8}{'ratio':>8}")
        for name in images:
            for op in ("push", "pull"):
                k = statistics.median(times[(name, op, "kiln")])
                s = statistics.median(times[(name, op, "skopeo")])
                print(f"{label[name]:<22}{op:<6}{k:>8.2f}{s:>8.2f}{k / s:>8.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
