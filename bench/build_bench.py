"""kiln build vs BuildKit vs buildah bud vs podman build, side by side.

    python bench/build_bench.py [--runs N] [--scenarios a,b] [--peers buildkit,buildah,podman]
                                [--kiln-base SRC]   # SRC: the code before a change, as a peer
    python bench/build_bench.py --quick        # 1 run, small inputs: does everything work?

For every scenario and repetition, each tool gets a fresh store with the busybox base
image loaded (untimed); the timed part is the wall time of the whole CLI process (BuildKit:
the docker client against a warm private dockerd, started once). Tools run interleaved,
scenario by scenario, in a rotating order within a repetition. Prints a table of medians,
kiln/peer ratios, CPU time and peak RSS, the machine's load, and whether kiln meets its
targets; writes bench/results/<stamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402

JOBS = 4  # the same --jobs for every tool in the parallel-stages scenario
NOOP_TARGET = 0.3  # seconds: kiln's fully cached rebuild
#: kiln's median over the peer's, at most (issue: faster than BuildKit on every scenario)
RATIO_TARGETS = {"buildkit": 0.8, "buildah": 0.5}
#: (scenario, peer) pairs whose ratio is printed but is no target: the peer did not run
#: what kiln ran (BuildKit has no --jobs: it builds stages4-j1's stages in parallel)
NOT_LIKE_FOR_LIKE = {
    ("stages4-j1", "buildkit"): "BuildKit has no --jobs; its stages ran in parallel"
}
STAGE_SECONDS = 2  # each independent stage's RUN sleeps this long
PUSH_FILES = 92  # files of 1 MB random data in the push/pull image (92 MB)
FROM = f"FROM {bl.BASE_REF}\n"
#: seconds to let the disk settle after a scenario's stores are deleted (see benchlib's
#: "the file system's state")
SETTLE = 10.0


@dataclass
class Scenario:
    name: str
    help: str
    context: callable  # () -> Path with a Dockerfile in it
    jobs: int | None = None
    warm: bool = False  # build once untimed first (same store), then time the rebuild
    mutate: callable | None = None  # (context) -> None, between warm and timed build
    extra: dict = field(default_factory=dict)
    kind: str = "build"  # "build" | "push" (build untimed, time the push) | "pull" | "pullbuild"
    floor: float | None = None  # seconds no tool can beat (the sleeps it must wait out)


def _write(ctx: Path, dockerfile: str) -> Path:
    ctx.mkdir(parents=True, exist_ok=True)
    path = ctx / "Dockerfile"
    if not path.exists() or path.read_text() != dockerfile:
        path.write_text(dockerfile)
    return ctx


def ctx_tiny() -> Path:
    return _write(bl.data_dir() / "ctx-tiny", FROM + 'RUN echo hello > /hello\nCMD ["/bin/sh"]\n')


def ctx_files(count: int) -> Path:
    ctx = bl.data_dir() / f"ctx-files{count}"
    bl.small_files(ctx / "files", count)
    return _write(ctx, FROM + "COPY files /files\n")


def ctx_bigfile(size: int) -> Path:
    ctx = bl.data_dir() / "ctx-bigfile"
    bl.random_file(ctx / "big.bin", size)
    return _write(ctx, FROM + "COPY big.bin /big.bin\n")


def ctx_run20() -> Path:
    steps = "".join(f"RUN echo step {i} > /step{i}\n" for i in range(20))
    return _write(bl.data_dir() / "ctx-run20", FROM + steps)


def ctx_stages4() -> Path:
    text = "".join(
        f"{FROM.strip()} AS s{i}\nRUN sleep {STAGE_SECONDS} && echo stage {i} > /out{i}\n\n"
        for i in range(4)
    )
    text += FROM + "".join(f"COPY --from=s{i} /out{i} /out{i}\n" for i in range(4))
    return _write(bl.data_dir() / "ctx-stages4", text)


def ctx_medium() -> Path:
    """~2,000 files of 4 KiB plus ten of 1 MiB (about 18 MiB), copied, then a RUN."""
    ctx = bl.data_dir() / "ctx-medium"
    bl.small_files(ctx / "app" / "src", 2_000, size=4096)
    for i in range(10):
        bl.random_file(ctx / "app" / "assets" / f"blob{i}.bin", 1 << 20)
    text = (
        FROM
        + "RUN echo deps > /deps\n"
        + "COPY app /app\n"
        + "RUN find /app -type f | wc -l > /app.count\n"
        + 'CMD ["/bin/sh"]\n'
    )
    return _write(ctx, text)


def ctx_push(count: int) -> Path:
    """``count`` files of 1 MB random data (incompressible) in one COPY layer."""
    ctx = bl.data_dir() / f"ctx-push{count}"
    for i in range(count):
        bl.random_file(ctx / "data" / f"r{i:03d}.bin", 1_000_000)
    return _write(ctx, FROM + "COPY data /data\n")


def change_one_file(ctx: Path) -> None:
    path = ctx / "app" / "src" / "d000" / "f00000.txt"
    path.write_text(f"changed {time.time_ns()}\n")


def scenarios(
    big_size: int, files: int = 20_000, push_files: int = PUSH_FILES
) -> dict[str, Scenario]:
    items = [
        Scenario("tiny", "FROM base, one RUN echo, CMD", ctx_tiny),
        Scenario("run20", "20 RUN steps", ctx_run20),
        Scenario(
            "stages4",
            f"4 independent stages of a {STAGE_SECONDS}-s RUN + COPY --from each, --jobs {JOBS}",
            ctx_stages4,
            jobs=JOBS,
            floor=float(STAGE_SECONDS),  # the four sleeps overlap
        ),
        Scenario(
            "stages4-j1", "the same with --jobs 1 (parallelism baseline)", ctx_stages4, jobs=1
        ),
        Scenario(
            f"files{files // 1000}k" if files >= 1000 else f"files{files}",
            f"COPY of {files:,} files of 256 B",
            lambda: ctx_files(files),
        ),  # fmt: skip
        Scenario(
            "bigfile",
            f"COPY of one {big_size / 2**30:g} GiB random file",
            lambda: ctx_bigfile(big_size),
            extra={"bytes": big_size},
        ),
        Scenario(
            "noop-rebuild",
            "medium context rebuilt with a warm cache, nothing changed",
            ctx_medium,
            warm=True,
        ),
        Scenario(
            "onefile-rebuild",
            "medium context rebuilt after one file changed",
            ctx_medium,
            warm=True,
            mutate=change_one_file,
        ),
        Scenario(
            "push",
            f"push of a {push_files} MB image to a local registry",
            lambda: ctx_push(push_files),
            kind="push",
        ),  # fmt: skip
        Scenario(
            "pull",
            f"pull of that {push_files} MB image into an empty store",
            lambda: ctx_push(push_files),
            kind="pull",
        ),  # fmt: skip
        Scenario(
            "pullbuild",
            f"pull of that {push_files} MB image, then a first build FROM it (RUN true)",
            lambda: ctx_push(push_files),
            kind="pullbuild",
        ),  # fmt: skip
    ]
    return {s.name: s for s in items}


QUICK = {"runs": 1, "big_size": 64 << 20, "files": 2_000, "push_files": 8}
QUICK_SKIP = ("stages4-j1",)


def measure(tool_cls, sc: Scenario, ctx: Path, rep: int, deferred: bl.Deferred,
            registry=None) -> bl.Sample:  # fmt: skip
    """One timed sample in a fresh store. The store is deleted when the scenario ends
    (``deferred``), never between two timed runs: a deletion charges the next run the file
    system's cost of it. BuildKit's one daemon keeps earlier samples' images and cache
    until then: its first builds use ``--no-cache``, and only a pull, which needs an empty
    store, removes the one image it pulled right away (92 files)."""
    tool = tool_cls(bl.scratch(f"kb-{tool_cls.name[:2]}-"))
    pulls = sc.kind in ("pull", "pullbuild")
    try:
        if sc.kind == "pull":
            return tool.measure(tool.pull_argv(registry.pull_ref), log=tool.work / "timed.log")
        if sc.kind == "pullbuild":  # the pulled layers are unpacked by the pull or the build
            pulled = tool.measure(tool.pull_argv(registry.pull_ref), log=tool.work / "pull.log")
            ctx_dir = _write(tool.work / "ctx-pullbuild",
                             f"FROM {registry.pull_ref}\nRUN true\n")  # fmt: skip
            built = tool.measure(tool.build_argv(ctx_dir, "localhost/bench-pullbuild:latest",
                                                 no_cache=tool.shared_store),
                                 log=tool.work / "timed.log")  # fmt: skip
            return bl.Sample(pulled.wall + built.wall, pulled.cpu + built.cpu,
                             max(pulled.rss, built.rss))  # fmt: skip
        tool.load_base(bl.base_tar())
        tag = f"localhost/bench-{sc.name}:latest"
        argv = tool.build_argv(ctx, tag, jobs=sc.jobs, no_cache=tool.shared_store and not sc.warm)
        if sc.kind == "push":
            tool.run(argv, log=tool.work / "build.log")
            dest = f"{registry.host}/bench/{tool.name}-{rep}-{secrets.token_hex(3)}:latest"
            if hasattr(tool, "tag_argv"):  # docker pushes a name, not an image
                tool.run(tool.tag_argv(tag, dest))
                tag = dest
            return tool.measure(tool.push_argv(tag, dest), log=tool.work / "timed.log")
        if sc.warm:  # BuildKit: a later sample's warm-up may hit an earlier one's cache
            tool.run(argv, log=tool.work / "warm.log")
            if sc.mutate:
                sc.mutate(ctx)
        return tool.measure(argv, log=tool.work / "timed.log")
    finally:
        if pulls and tool.shared_store:
            tool.cleanup()
        else:
            deferred.add(tool)


def _rotation(tools: list[str], rep: int) -> list[str]:
    """The tool order of repetition ``rep``: rotated by one each time, so no tool always
    runs first (a cold page cache) or right after the same other tool."""
    k = rep % len(tools)
    return tools[k:] + tools[:k]


@contextlib.contextmanager
def local_registry(push_ctx: Path, deferred: bl.Deferred):
    """A plain-HTTP registry on 127.0.0.1 (Debian's docker-registry) holding the pull
    scenario's image, pushed there once by kiln (untimed; its store goes with ``deferred``)."""
    sys.path.insert(0, str(bl.TESTS_DIR))
    import registry_servers

    with registry_servers.start_registry("plain") as reg:
        tool = bl.Kiln(bl.scratch("kb-seed-"))
        try:
            tool.load_base(bl.base_tar())
            tool.run(tool.build_argv(push_ctx, "localhost/pull-src:latest"))
            reg.pull_ref = f"{reg.host}/bench/pull-src:latest"
            tool.run(tool.push_argv("localhost/pull-src:latest", reg.pull_ref))
        finally:
            deferred.add(tool)
        yield reg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="repetitions per scenario and tool")
    ap.add_argument("--scenarios", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--peers", default=",".join(bl.PEERS), help="peers to compare with")
    ap.add_argument(
        "--big-size",
        type=int,
        default=1 << 30,
        help="bytes of the bigfile scenario's file (default 1 GiB)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="one run of every scenario on small inputs (64 MiB file, 2,000 files, 8 MB "
        "image): checks that the bench and every tool work, not for numbers",
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=SETTLE,
        help="seconds to wait after deleting the last scenario's stores, before the next "
        f"scenario's first timed run (default {SETTLE:g})",
    )
    bl.add_bytecode_flag(ap)
    bl.add_kiln_base_flag(ap)
    args = ap.parse_args()
    bl.use_kiln_bytecode(not args.kiln_no_bytecode_cache)
    sizes = {"big_size": args.big_size, "files": 20_000, "push_files": PUSH_FILES}
    if args.quick:
        sizes = {k: QUICK[k] for k in sizes}
        args.runs = QUICK["runs"]

    table = scenarios(**sizes)
    chosen = [s for s in args.scenarios.split(",") if s] or [
        n for n in table if not (args.quick and n in QUICK_SKIP)
    ]
    unknown = [s for s in chosen if s not in table]
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(table)}")
    peers = bl.use_kiln_base(args.kiln_base)
    peers += bl.installed_peers([p for p in args.peers.split(",") if p])
    tools = ["kiln", *peers]

    results: dict[str, dict[str, list[bl.Sample]]] = {}
    errors: dict[str, dict[str, list[str]]] = {}
    loads: dict[str, str] = {}
    probes: dict[str, list[bl.Probe]] = {}
    deferred = bl.Deferred()
    with contextlib.ExitStack() as stack:
        if "buildkit" in tools:
            bl.log("starting a private dockerd (BuildKit)")
            bl.BuildKit.start_daemon()
            stack.callback(bl.BuildKit.stop_daemon)
        stack.callback(deferred.flush)  # while the daemon still runs (BuildKit's cleanup)
        bl.log("warming up kiln (untimed)")
        bl.warm_up_kiln(ctx_medium(), deferred)
        registry = None
        if any(table[n].kind != "build" for n in chosen):
            registry = stack.enter_context(local_registry(table["pull"].context(), deferred))
        for name in chosen:
            sc = table[name]
            ctx = sc.context()
            deferred.flush(args.settle)  # the last scenario's stores: before, not between, runs
            bl.log(f"== {name}: {sc.help} ({bl.load_line()})")
            results[name] = {t: [] for t in tools}
            probe_dir = bl.scratch("kb-probe-")
            deferred.add(probe_dir)
            for rep in range(args.runs):
                for t in _rotation(tools, rep):
                    probe = bl.create_probe(probe_dir)
                    probes.setdefault(name, []).append(probe)
                    try:
                        sample = measure(bl.TOOLS[t], sc, ctx, rep, deferred, registry)
                    except bl.BenchError as exc:  # counted, and the other runs still go on
                        errors.setdefault(name, {}).setdefault(t, []).append(str(exc))
                        bl.log(f"   run {rep + 1} {t:8s} FAILED\n{exc}")
                        continue
                    results[name][t].append(sample)
                    bl.log(f"   run {rep + 1} {t:8s} {sample.wall:8.3f} s  cpu {sample.cpu:7.3f} s"
                           f"  rss {sample.rss / 1e6:6.0f} MB  {bl.probe_line(probe)}")  # fmt: skip
            loads[name] = bl.load_line()

    print(bl.summary_table(results, tools))
    floors = {n: table[n].floor for n in chosen if table[n].floor is not None}
    if floors:
        print("\nbeyond the floor (median wall - the scenario's least possible time):")
        print(bl.overhead_table(results, tools, floors))
    print()
    for name in chosen:
        med = bl.median_probe(probes.get(name, []))
        print(f"{name}: {table[name].help}; after it: {loads.get(name, '-')}; "
              f"{bl.probe_line(med) if med else 'no probe'}")  # fmt: skip
    targets = check_targets(results)
    print()
    for line in targets["lines"]:
        print(line)
    if errors:
        fails = [f"{s}/{t} {len(x)}/{args.runs}" for s, e in errors.items() for t, x in e.items()]
        print("\nfailed runs (not in the medians): " + "; ".join(fails))
    walls = {n: {t: [x.wall for x in v] for t, v in results[n].items()} for n in chosen}
    payload = {
        "runs": args.runs,
        "quick": args.quick,
        "jobs": JOBS,
        "settle": args.settle,
        "kiln_bytecode_cache": not args.kiln_no_bytecode_cache,
        "scenarios": {
            n: {
                "help": table[n].help,
                **table[n].extra,
                "samples": walls[n],
                "cpu": {t: [x.cpu for x in v] for t, v in results[n].items()},
                "rss": {t: [x.rss for x in v] for t, v in results[n].items()},
                "load": loads.get(n, ""),
                "median": {t: bl.median(v) for t, v in walls[n].items()},
                "ratio": {
                    p: bl.ratio(bl.median(walls[n]["kiln"]), bl.median(walls[n][p])) for p in peers
                },
                "errors": errors.get(n, {}),
                "floor": table[n].floor,
                "probes_us": [[x.create_us, x.fsync_us] for x in probes.get(n, [])],
            }
            for n in chosen
        },
        "targets": targets["met"],
    }
    print(f"\nwrote {os.path.relpath(bl.write_json('build', payload))}")
    return 0 if all(targets["met"].values()) and not errors else 1


def check_targets(results: dict[str, dict[str, list]]) -> dict:
    """kiln's median wall time at most RATIO_TARGETS[peer] x each peer's (unless the pair
    is NOT_LIKE_FOR_LIKE), and the no-op rebuild under NOOP_TARGET seconds."""
    met: dict[str, bool] = {}
    lines = []
    for name, per_tool in results.items():
        k = bl.median([bl.wall_of(x) for x in per_tool.get("kiln", [])])
        for peer, most in RATIO_TARGETS.items():
            p = bl.median([bl.wall_of(x) for x in per_tool.get(peer, [])])
            if k is None or p is None:
                continue
            if why := NOT_LIKE_FOR_LIKE.get((name, peer)):
                lines.append(f"[ -- ] {name}: kiln / {peer} {k / p:.2f} is no target ({why})")
                continue
            ok = k <= most * p
            met[f"{name}: kiln <= {most} x {peer}"] = ok
            lines.append(
                f"[{'MET ' if ok else 'MISS'}] {name}: kiln {k:.3f} s <= {most} x {peer} "
                f"{p:.3f} s (ratio {k / p:.2f})"
            )
    noop = bl.median([bl.wall_of(x) for x in results.get("noop-rebuild", {}).get("kiln", [])])
    if noop is not None:
        ok = noop < NOOP_TARGET
        met[f"noop-rebuild: kiln < {NOOP_TARGET} s"] = ok
        lines.append(
            f"[{'MET ' if ok else 'MISS'}] noop-rebuild: kiln {noop:.3f} s < {NOOP_TARGET} s"
        )
    return {"met": met, "lines": lines}


if __name__ == "__main__":
    sys.exit(main())
