"""Registry build cache: an empty machine building with a cache another machine pushed, against
the same empty machine building cold — kiln's registry cache and BuildKit's inline cache.

    python bench/registry_cache_bench.py [--runs 3] [--blob-mib 32] [--files 2000] [--loops N]

The Containerfile writes a random file, copies a context of small files and runs a
shell loop standing for a compile step. One private registry (Debian's docker-registry)
holds the base image. For every run:

    kiln      exporter: fresh store, build --cache-to type=registry,ref=R/kiln-cache:N,mode=max
              cold:     fresh store, build                      (timed)
              hit:      fresh store, build --cache-from R/kiln-cache:N   (timed)
    BuildKit  exporter: fresh dockerd, build --build-arg BUILDKIT_INLINE_CACHE=1, docker push
              cold:     fresh dockerd, docker build            (timed)
              hit:      fresh dockerd, docker build --cache-from R/bk:N  (timed)

Every timed build starts from nothing: the base image is pulled from the registry. dockerd is
Debian's docker.io, started privately as tests/differential does (its ``Dockerd``). Prints
medians and hit/cold ratios, the load average around the runs (the machine may be shared),
and writes bench/results/<stamp>-regcache.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "differential"))

import benchlib as bl  # noqa: E402

import registry_servers  # noqa: E402

DOCKERFILE = """\
FROM {base}
RUN dd if=/dev/urandom of=/blob bs=1M count={blob_mib} 2>/dev/null
COPY files/ /app/
RUN find /app -type f | wc -l > /count && sha256sum /blob > /sum
RUN i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done; echo $i > /loop-count
RUN for i in $(seq 1 500); do echo line $i; done > /lines
ENV MODE=bench
CMD ["/bin/sh"]
"""


def _context(base: str, blob_mib: int, files: int, loops: int) -> Path:
    ctx = bl.data_dir() / f"ctx-regcache-{files}"
    bl.small_files(ctx / "files", files)
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base, blob_mib=blob_mib, loops=loops))
    return ctx


def _kiln(work: Path) -> bl.Kiln:
    return bl.Kiln(work)


def _kiln_build(tool: bl.Kiln, ctx: Path, *flags: str) -> float:
    argv = [*tool.prefix(), "build", "--runtime", "runc", "--network", "none", "--tls-verify=false"]
    argv += flags
    return tool.run([*argv, "-t", "localhost/regcache-bench:latest", str(ctx)])


def _push_base(registry: str) -> str:
    ref = f"{registry}/bench/base:1"
    seed = _kiln(bl.scratch("kb-seed-"))
    try:
        seed.load_base(bl.base_tar())
        seed.run([*seed.prefix(), "push", "--tls-verify=false", bl.BASE_REF, ref])
    finally:
        seed.cleanup()
    return ref


def run_kiln(ctx: Path, registry: str, n: int) -> tuple[float, float]:
    cache = f"{registry}/bench/kiln-cache:{n}"
    tools = [_kiln(bl.scratch("kb-rc-")) for _ in range(3)]
    try:
        _kiln_build(tools[0], ctx, "--cache-to", f"type=registry,ref={cache},mode=max")
        cold = _kiln_build(tools[1], ctx)
        hit = _kiln_build(tools[2], ctx, "--cache-from", cache)
        log = (tools[2].work / "last.log").read_text(errors="replace")
        if log.count("--> Using cache") < 4:
            raise bl.BenchError(f"kiln: the cache-from build missed steps:\n{log[-2000:]}")
    finally:
        for tool in tools:
            tool.cleanup()
    return cold, hit


def _daemon():
    from bed import Dockerd

    work = tempfile.mkdtemp(prefix="kb-dockerd-")
    d = Dockerd(work)
    d.start()
    return d


def _stop(d) -> None:
    d.stop()
    bl.unmount_under(Path(d.work))
    shutil.rmtree(d.work, ignore_errors=True)


def _docker_build(d, ctx: Path, *flags: str) -> float:
    import time

    start = time.perf_counter()
    res = d.docker(
        "build",
        "--network",
        "none",
        "--progress",
        "plain",
        *flags,
        str(ctx),
        check=False,
        timeout=900,
    )
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise bl.BenchError(f"docker build failed: {res.stderr.decode(errors='replace')[-2000:]}")
    d.last_log = res.stderr.decode(errors="replace")
    return took


def run_buildkit(ctx: Path, registry: str, n: int) -> tuple[float, float]:
    image = f"{registry}/bench/bk:{n}"
    d = _daemon()
    try:
        _docker_build(d, ctx, "--build-arg", "BUILDKIT_INLINE_CACHE=1", "-t", image)
        d.docker("push", image, timeout=600)
    finally:
        _stop(d)
    d = _daemon()
    try:
        cold = _docker_build(d, ctx, "-t", "regcache-bench")
    finally:
        _stop(d)
    d = _daemon()
    try:
        hit = _docker_build(d, ctx, "--cache-from", image, "-t", "regcache-bench")
        if d.last_log.count("CACHED") < 4:
            raise bl.BenchError(f"BuildKit: the cache-from build missed steps:\n{d.last_log}")
    finally:
        _stop(d)
    return cold, hit


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--blob-mib", type=int, default=32)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--loops", type=int, default=1_000_000, help="the compile-like RUN's loop")
    ap.add_argument("--no-buildkit", action="store_true")
    bl.add_bytecode_flag(ap)
    args = ap.parse_args()
    bl.use_kiln_bytecode(not args.kiln_no_bytecode_cache)
    from bed import Dockerd

    buildkit = not args.no_buildkit and Dockerd.available()
    times: dict[str, list[float]] = {"kiln cold": [], "kiln hit": []}
    if buildkit:
        times.update({"buildkit cold": [], "buildkit hit": []})
    load_before = os.getloadavg()
    with registry_servers.start_registry("plain") as reg:
        base = _push_base(reg.host)
        ctx = _context(base, args.blob_mib, args.files, args.loops)
        warm = bl.data_dir() / "ctx-regcache-warm"
        warm.mkdir(parents=True, exist_ok=True)
        (warm / "Dockerfile").write_text(f"FROM {bl.BASE_REF}\nRUN true\n")
        bl.warm_up_kiln(warm)  # untimed: fills kiln's bytecode cache
        for n in range(args.runs):
            order = [("kiln", run_kiln), ("buildkit", run_buildkit)]
            if n % 2:
                order.reverse()
            for name, fn in order:
                if name == "buildkit" and not buildkit:
                    continue
                cold, hit = fn(ctx, reg.host, n)
                times[f"{name} cold"].append(cold)
                times[f"{name} hit"].append(hit)
                bl.log(f"run {n + 1}: {name} cold {cold:.2f}s, cache hit {hit:.2f}s")
    load_after = os.getloadavg()
    med = {k: bl.median(v) for k, v in times.items()}
    rows = [["tool", "cold (s)", "cache hit (s)", "hit/cold"]]
    for name in ("kiln", "buildkit"):
        if f"{name} cold" in med:
            cold, hit = med[f"{name} cold"], med[f"{name} hit"]
            r = bl.ratio(hit, cold)
            rows.append([name, bl.fmt_s(cold), bl.fmt_s(hit), f"{r:.2f}" if r else "-"])
    print(bl.table(rows))
    if buildkit:
        r = bl.ratio(med["kiln hit"], med["buildkit hit"])
        print(f"kiln hit / BuildKit hit: {r:.2f}" if r else "")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (2 cores)")
    path = bl.write_json(
        "regcache",
        {"samples": times, "medians": med, "load": [load_before, load_after], "args": vars(args)},
    )
    bl.log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
