"""``kiln serve`` at scale: image inspect latency under parallel clients, and the
server's memory across many builds.

    python bench/api_scale_bench.py [--images 1000,10000] [--clients 20] [--requests 50]
                                    [--rounds 3] [--builds 1000] [--build-jobs 2]
                                    [--kiln-base OLD/src] [--settle 10]

For each image count, a fresh store is filled (untimed) with that many images made
straight in the store: one base layer every image shares, each image one more
metadata-only history entry (``ENV I=n``), every second one also a small layer of its
own -- what a store full of builds ``FROM`` one base looks like. A ``kiln serve`` on a
unix socket then answers ``--clients`` threads, each sending ``--requests`` inspects
(Docker's ``GET /images/{name}/json``, libpod's every other time) of random images,
``--rounds`` times; printed: p50, p90, p99 and max latency over all rounds, and the
server's CPU time per request.

With ``--kiln-base SRC`` (another checkout's ``src``: the code before a change) a second
server runs that code on a copy of the same store (filled by the older code, migrated by
the newer when it opens it), and the rounds alternate between the two servers, the
order rotated each round, so the machine's load falls on both alike; printed beside:
kiln / kiln-base ratios. Stores are kept until the next image count (or the end) and
then deleted together, ``--settle`` seconds before the next timed round.

Then one client lists: ``GET /images/json``, ``/libpod/images/json`` and ``/info``, five
times each, on each server; printed: the median wall and server CPU time of each (the
store answers them with a fixed number of queries, so the time grows with the rows
written, not with queries per image; ``/info`` only counts), and the first of each apart
(a list the server cannot answer from the lists it keeps while the store is unchanged).

Then ``kiln images``, a fresh process on each store (the tools alternating, five times):
printed: its median wall and CPU time (its own and its children's) and peak RSS.

Then (``--builds`` > 0) the server of the code under test builds that many times a tiny context
(``FROM base``, ``RUN echo n > /n``, ``LABEL n=n``) through ``POST /build``,
``--build-jobs`` at a time, and the server's resident memory (``VmRSS``) is sampled
every tenth of the way: printed are the RSS after the first tenth and at the end and the
growth per build between them (warm-up excluded). Writes
bench/results/<stamp>-api-scale.json.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import random
import socket
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api_bench  # noqa: E402
import benchlib as bl  # noqa: E402


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 120):
        super().__init__("kiln", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def populate(root: Path, count: int, env: dict[str, str] | None = None) -> list[str]:
    """``count`` images in a fresh store at ``root``; returns their names. Runs in a child
    process (with ``env``: the kiln it names) so the store's fsyncs can be skipped
    (throw-away data) without touching this one."""
    code = f"""
import io, os, sys, tarfile
os.fsync = lambda fd: None   # throw-away bench store: no need to wait for the disk
from kiln.store import Store
from kiln.image import register_image
from kiln.oci import Descriptor, Digest, History, ImageConfig, Manifest, RuntimeConfig
from kiln.oci import media_types as mt

def tar_of(name):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(name); data = name.encode(); info.size = len(data)
        info.mtime = 1_700_000_000
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()

store = Store({str(root)!r})
when = "2024-01-01T00:00:00Z"
base = tar_of("base")
base_desc = Descriptor(mt.OCI_LAYER, store.put_bytes(base), len(base))
base_hist = History(created=when, created_by="ADD base /")
for n in range({count}):
    layers, diff_ids, hist = [base_desc], [str(Digest.of_bytes(base))], [base_hist]
    hist.append(History(created=when, created_by=f"ENV I={{n}}", empty_layer=True))
    if n % 2:
        own = tar_of(f"own-{{n}}")
        layers.append(Descriptor(mt.OCI_LAYER, store.put_bytes(own), len(own)))
        diff_ids.append(str(Digest.of_bytes(own)))
        hist.append(History(created=when, created_by=f"COPY own-{{n}} /"))
    config = ImageConfig(created=when, architecture="amd64", os="linux",
                         config=RuntimeConfig(env=(f"I={{n}}",)),
                         diff_ids=tuple(diff_ids), history=tuple(hist))
    raw = config.to_bytes()
    cdesc = Descriptor(mt.OCI_CONFIG, store.put_bytes(raw), len(raw))
    manifest = Manifest.build(mt.OCI_MANIFEST, cdesc, layers)
    register_image(store, manifest, ImageConfig.parse(raw), [f"localhost/scale-{{n}}:latest"])
store.close()
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=3600, env=env)
    return [f"localhost/scale-{n}:latest" for n in range(count)]


def inspect_load(sock: str, names: list[str], clients: int, requests: int) -> list[float]:
    lat: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def client(seed: int) -> None:
        rnd = random.Random(seed)
        conn = UnixHTTPConnection(sock)
        mine = []
        for i in range(requests):
            name = rnd.choice(names)
            path = f"/v4.0.0/libpod/images/{name}/json" if i % 2 else f"/v1.41/images/{name}/json"
            t = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            mine.append(time.perf_counter() - t)
            if resp.status != 200:
                errors.append(f"{path}: {resp.status} {body[:200]!r}")
        conn.close()
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    if errors:
        raise bl.BenchError("inspect failed: " + "; ".join(errors[:3]))
    return lat


LIST_ROUTES = ("/v1.41/images/json", "/v4.0.0/libpod/images/json", "/v1.41/info")


def list_times(sock: str, pid: int, repeat: int = 5) -> dict[str, dict[str, float]]:
    """Median wall and server CPU seconds of each listing route (``docker images``,
    ``podman images``, ``docker info``), one client, ``repeat`` times each."""
    out: dict[str, dict[str, float]] = {}
    conn = UnixHTTPConnection(sock)
    for path in LIST_ROUTES:
        walls, cpus = [], []
        for _ in range(repeat):
            t, cpu = time.perf_counter(), cpu_seconds(pid)
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            walls.append(time.perf_counter() - t)
            cpus.append(cpu_seconds(pid) - cpu)
            if resp.status != 200:
                raise bl.BenchError(f"{path}: {resp.status} {body[:200]!r}")
        out[path] = {"wall": sorted(walls)[repeat // 2], "cpu": sorted(cpus)[repeat // 2],
                     # the first: before any list the server may keep (a store that changed)
                     "first_wall": walls[0], "first_cpu": cpus[0]}  # fmt: skip
    conn.close()
    return out


def cli_times(tools: dict[str, bl.Kiln], repeat: int = 5) -> dict[str, dict[str, float]]:
    """``kiln images`` as a fresh process on each tool's store, the tools alternating:
    median wall and CPU seconds (its own and its children's, from ``wait4``) and peak RSS."""
    samples: dict[str, list[bl.Sample]] = {v: [] for v in tools}
    for rep in range(repeat):
        for v in rotation(list(tools), rep):
            tool = tools[v]
            log = tool.work / "images.log"
            samples[v].append(bl.timed_sample(v, [*tool.prefix(), "images"], tool.env, log, 600))
    out = {}
    for v, got in samples.items():
        out[v] = {"wall": bl.median([g.wall for g in got]) or 0.0,
                  "cpu": bl.median([g.cpu for g in got]) or 0.0,
                  "rss": max(g.rss for g in got)}  # fmt: skip
        bl.log(f"   {v}: kiln images: {out[v]['wall'] * 1e3:.0f} ms (CPU "
               f"{out[v]['cpu'] * 1e3:.0f} ms, RSS {out[v]['rss'] >> 20} MiB)")  # fmt: skip
    return out


def percentiles(lat: list[float]) -> dict[str, float]:
    lat = sorted(lat)

    def p(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    return {"p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "max": lat[-1], "n": len(lat)}


def context_tar(n: int) -> bytes:
    dockerfile = f"FROM {bl.BASE_REF}\nRUN echo {n} > /n\nLABEL n={n}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        t.addfile(info, io.BytesIO(dockerfile))
    return buf.getvalue()


def one_build(sock: str, n: int) -> None:
    conn = UnixHTTPConnection(sock, timeout=300)
    conn.request(
        "POST",
        f"/v1.41/build?t=localhost/scale-build-{n}:latest&rm=1",
        body=context_tar(n),
        headers={"Content-Type": "application/x-tar"},
    )
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    if resp.status != 200 or b'"errorDetail"' in body or b"aux" not in body:
        raise bl.BenchError(f"build {n}: {resp.status} {body[-400:]!r}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def build_series(server: api_bench.Server, builds: int, jobs: int) -> dict:
    assert server.proc is not None
    step = max(1, builds // 10)
    samples: list[tuple[int, int]] = [(0, rss_kib(server.proc.pid))]
    started = time.perf_counter()
    done = 0
    with ThreadPoolExecutor(jobs) as pool:
        for lo in range(0, builds, step):
            list(
                pool.map(
                    lambda n: one_build(str(server.sock), n), range(lo, min(builds, lo + step))
                )
            )
            done = min(builds, lo + step)
            samples.append((done, rss_kib(server.proc.pid)))
            bl.log(f"   {done:6d} builds  RSS {samples[-1][1] / 1024:7.1f} MiB")
    elapsed = time.perf_counter() - started

    def slope(a: tuple[int, int], b: tuple[int, int]) -> float:
        return (b[1] - a[1]) * 1024 / (b[0] - a[0]) if b[0] > a[0] else 0.0

    return {
        "builds": builds,
        "seconds": elapsed,
        "rss_kib": samples,
        "bytes_per_build_after_warmup": slope(samples[1], samples[-1]),
        # the Go runtime of the Dockerfile parser and the allocator settle in the first
        # hundreds of builds: the second half says whether memory keeps growing
        "bytes_per_build_second_half": slope(samples[len(samples) // 2], samples[-1]),
    }


def rotation(names: list[str], rep: int) -> list[str]:
    k = rep % len(names)
    return names[k:] + names[:k]


def fill_stores(tools: list[bl.Kiln], count: int) -> list[str]:
    """The same ``count`` images in every tool's store: filled once by the first tool's code
    (with the base image, for the builds), then copied (the other code migrates its copy
    when its server opens it)."""
    first = tools[0]
    first.load_base(bl.base_tar())
    names = populate(Path(first.env["KILN_ROOT"]), count, first.env)
    for tool in tools[1:]:
        subprocess.run(
            ["cp", "-a", first.env["KILN_ROOT"], tool.env["KILN_ROOT"]], check=True, timeout=3600
        )
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="1000,10000", help="image counts, comma-separated")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=50, help="inspects per client per round")
    ap.add_argument("--rounds", type=int, default=3, help="inspect rounds per server (interleaved)")
    ap.add_argument("--builds", type=int, default=1000)
    ap.add_argument("--build-jobs", type=int, default=2)
    ap.add_argument("--settle", type=float, default=10.0,
                    help="seconds to wait after deleting an image count's stores")  # fmt: skip
    bl.add_bytecode_flag(ap)
    bl.add_kiln_base_flag(ap)
    args = ap.parse_args()
    bl.use_kiln_bytecode(not args.kiln_no_bytecode_cache)
    variants = ["kiln", *bl.use_kiln_base(args.kiln_base)]
    counts = [int(c) for c in args.images.split(",") if c]
    results: dict = {"inspect": {}, "clients": args.clients, "requests": args.requests,
                     "rounds": args.rounds, "variants": variants}  # fmt: skip
    deferred = bl.Deferred()
    try:
        for count in counts:
            deferred.flush(args.settle)  # the last count's stores: before, not between, runs
            tools = {v: bl.TOOLS[v](bl.scratch(f"kas-{v[-4:]}-")) for v in reversed(variants)}
            servers = {v: api_bench.Server(tool) for v, tool in tools.items()}
            for tool in tools.values():
                deferred.add(tool)
            try:
                bl.log(f"== {count} images: filling the store (untimed)")
                names = fill_stores(list(tools.values()), count)
                for server in servers.values():
                    server.start()
                    inspect_load(str(server.sock), names[:50], 2, 5)  # warm-up, untimed
                bl.log(f"   {bl.load_line()}")
                results["inspect"][count] = inspect_rounds(servers, names, args, variants)
                for v, server in servers.items():
                    assert server.proc is not None
                    listed = list_times(str(server.sock), server.proc.pid)
                    results.setdefault("list", {}).setdefault(count, {})[v] = listed
                    for path, t in listed.items():
                        bl.log(f"   {v}: GET {path}: {t['wall'] * 1e3:.0f} ms "
                               f"(server CPU {t['cpu'] * 1e3:.0f} ms)")  # fmt: skip
                results.setdefault("cli", {})[count] = cli_times(tools)
                if args.builds and count == counts[0]:
                    bl.log(
                        f"== {args.builds} builds through POST /build, {args.build_jobs} at a time"
                    )
                    results["builds"] = build_series(servers["kiln"], args.builds, args.build_jobs)
            finally:
                for server in servers.values():
                    server.stop()
    finally:
        deferred.flush()
    return report(results, counts, variants)


def inspect_rounds(servers: dict[str, api_bench.Server], names: list[str], args,
                   variants: list[str]) -> dict[str, dict[str, float]]:  # fmt: skip
    """``args.rounds`` rounds of the inspect load on every server, the order rotated each
    round, so machine noise falls on all alike; per server: percentiles of all its rounds."""
    lat: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, float] = {v: 0.0 for v in variants}
    wall: dict[str, float] = {v: 0.0 for v in variants}
    for rep in range(args.rounds):
        for v in rotation(variants, rep):
            proc = servers[v].proc
            assert proc is not None
            t, c = time.perf_counter(), cpu_seconds(proc.pid)
            got = inspect_load(str(servers[v].sock), names, args.clients, args.requests)
            wall[v] += time.perf_counter() - t
            cpu[v] += cpu_seconds(proc.pid) - c
            lat[v] += got
            p = percentiles(got)
            bl.log(f"   round {rep + 1} {v:9s} p50 {p['p50'] * 1e3:6.1f} ms  p99 "
                   f"{p['p99'] * 1e3:6.1f} ms  server CPU {(cpu_seconds(proc.pid) - c) / len(got) * 1e3:.3f} "
                   f"ms/request  ({bl.load_line()})")  # fmt: skip
    out = {}
    for v in variants:
        stats = percentiles(lat[v]) | {
            "wall": wall[v],
            "server_cpu_per_request": cpu[v] / len(lat[v]),
        }
        out[v] = stats
        bl.log(
            f"   {v}: inspect x{stats['n']} by {args.clients} clients: p50 {stats['p50'] * 1e3:.1f}"
            f" ms  p90 {stats['p90'] * 1e3:.1f} ms  p99 {stats['p99'] * 1e3:.1f} ms"
            f"  max {stats['max'] * 1e3:.1f} ms  (server CPU "
            f"{stats['server_cpu_per_request'] * 1e3:.3f} ms per request)"
        )
    return out


def report(results: dict, counts: list[str] | list[int], variants: list[str]) -> int:
    rows = [["images", "server", "p50 ms", "p90 ms", "p99 ms", "max ms", "server CPU ms/req"]]
    keys = ("p50", "p90", "p99", "max", "server_cpu_per_request")
    for count, per in results["inspect"].items():
        for v, s in per.items():
            rows.append(
                [str(count), v]
                + [f"{s[k] * 1e3:.{3 if k.startswith('server') else 1}f}" for k in keys]
            )
    print(bl.table(rows))
    if len(variants) > 1:
        print()
        for count, per in results["inspect"].items():
            new, old = per["kiln"], per["kiln-base"]
            print(f"{count} images, kiln / kiln-base: p50 {new['p50'] / old['p50']:.2f}  p99 "
                  f"{new['p99'] / old['p99']:.2f}  server CPU per request "
                  f"{new['server_cpu_per_request'] / old['server_cpu_per_request']:.2f}")  # fmt: skip
    if results.get("list"):
        rows = [["images", "server", *(f"{p} ms (CPU)" for p in LIST_ROUTES)]]
        for count, per in results["list"].items():
            for v, listed in per.items():
                rows.append([str(count), v] + [
                    f"{listed[p]['wall'] * 1e3:.0f} ({listed[p]['cpu'] * 1e3:.0f})"
                    for p in LIST_ROUTES
                ])  # fmt: skip
        print("\n" + bl.table(rows))
        rows = [["images", "server", *(f"{p} first ms (CPU)" for p in LIST_ROUTES[:2])]]
        for count, per in results["list"].items():
            for v, listed in per.items():
                rows.append([str(count), v] + [
                    f"{listed[p]['first_wall'] * 1e3:.0f} ({listed[p]['first_cpu'] * 1e3:.0f})"
                    for p in LIST_ROUTES[:2]
                ])  # fmt: skip
        print("\n" + bl.table(rows))
    if results.get("cli"):
        rows = [["images", "kiln", "kiln images ms", "CPU ms", "peak RSS MiB"]]
        for count, per in results["cli"].items():
            for v, t in per.items():
                rows.append([str(count), v, f"{t['wall'] * 1e3:.0f}", f"{t['cpu'] * 1e3:.0f}",
                             f"{t['rss'] >> 20}"])  # fmt: skip
        print("\n" + bl.table(rows))
    met = {}
    if counts:
        worst = results["inspect"][max(counts)]["kiln"]["p99"]
        met[f"inspect p99 < 50 ms at {max(counts)} images"] = worst < 0.05
    if len(results.get("list", {})) > 1:
        lo, hi = min(counts), max(counts)
        info = {c: results["list"][c]["kiln"]["/v1.41/info"]["cpu"] for c in (lo, hi)}
        # /info counts rows: its cost must not follow the image count
        met[f"/info server CPU at {hi} images < 3x at {lo}"] = info[hi] < 3 * max(info[lo], 1e-3)
    if "builds" in results:
        b = results["builds"]
        print(
            f"\nRSS over {b['builds']} builds: {b['rss_kib'][1][1] / 1024:.1f} MiB after "
            f"{b['rss_kib'][1][0]} -> {b['rss_kib'][-1][1] / 1024:.1f} MiB at {b['builds']}: "
            f"{b['bytes_per_build_after_warmup'] / 1024:.1f} KiB per build; second half "
            f"{b['bytes_per_build_second_half'] / 1024:.1f} KiB per build"
        )
        met["RSS growth < 2 KiB per build (second half)"] = b["bytes_per_build_second_half"] < 2048
    for what, ok in met.items():
        print(f"[{'MET ' if ok else 'MISS'}] {what}")
    results["targets"] = met
    print(f"\nwrote {os.path.relpath(bl.write_json('api-scale', results))}")
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
