"""kiln build vs buildah bud vs podman build, side by side.

    python bench/build_bench.py [--runs N] [--scenarios a,b] [--peers buildah,podman]

For every scenario and repetition, each tool gets a fresh store with the busybox base
image loaded (untimed); the timed part is the wall time of the whole build CLI process.
Tools run in a rotating order within a repetition. Prints a table of medians and
kiln/peer ratios and whether kiln meets its targets; writes bench/results/<stamp>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402

JOBS = 4  # the same --jobs for every tool in the parallel-stages scenario
NOOP_TARGET = 0.3  # seconds: kiln's fully cached rebuild
FROM = f"FROM {bl.BASE_REF}\n"


@dataclass
class Scenario:
    name: str
    help: str
    context: callable  # () -> Path with a Dockerfile in it
    jobs: int | None = None
    warm: bool = False  # build once untimed first (same store), then time the rebuild
    mutate: callable | None = None  # (context) -> None, between warm and timed build
    extra: dict = field(default_factory=dict)


def _write(ctx: Path, dockerfile: str) -> Path:
    ctx.mkdir(parents=True, exist_ok=True)
    path = ctx / "Dockerfile"
    if not path.exists() or path.read_text() != dockerfile:
        path.write_text(dockerfile)
    return ctx


def ctx_tiny() -> Path:
    return _write(bl.data_dir() / "ctx-tiny", FROM + 'RUN echo hello > /hello\nCMD ["/bin/sh"]\n')


def ctx_files20k() -> Path:
    ctx = bl.data_dir() / "ctx-files20k"
    bl.small_files(ctx / "files", 20_000)
    return _write(ctx, FROM + "COPY files /files\n")


def ctx_bigfile(size: int) -> Path:
    ctx = bl.data_dir() / "ctx-bigfile"
    bl.random_file(ctx / "big.bin", size)
    return _write(ctx, FROM + "COPY big.bin /big.bin\n")


def ctx_run20() -> Path:
    steps = "".join(f"RUN echo step {i} > /step{i}\n" for i in range(20))
    return _write(bl.data_dir() / "ctx-run20", FROM + steps)


def ctx_stages4() -> Path:
    text = "".join(f"{FROM.strip()} AS s{i}\nRUN echo stage {i} > /out{i}\n\n" for i in range(4))
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


def change_one_file(ctx: Path) -> None:
    path = ctx / "app" / "src" / "d000" / "f00000.txt"
    path.write_text(f"changed {time.time_ns()}\n")


def scenarios(big_size: int) -> dict[str, Scenario]:
    items = [
        Scenario("tiny", "FROM base, one RUN echo, CMD", ctx_tiny),
        Scenario("files20k", "COPY of 20,000 files of 256 B", ctx_files20k),
        Scenario(
            "bigfile",
            f"COPY of one {big_size / 2**30:g} GiB random file",
            lambda: ctx_bigfile(big_size),
            extra={"bytes": big_size},
        ),
        Scenario("run20", "20 RUN steps", ctx_run20),
        Scenario(
            "stages4",
            f"4 independent stages + COPY --from each, --jobs {JOBS}",
            ctx_stages4,
            jobs=JOBS,
        ),
        Scenario(
            "stages4-j1", "the same with --jobs 1 (parallelism baseline)", ctx_stages4, jobs=1
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
    ]
    return {s.name: s for s in items}


def measure(tool_cls, sc: Scenario, ctx: Path, rep: int) -> float:
    tool = tool_cls(bl.scratch(f"kb-{tool_cls.name[:2]}-"))
    try:
        tool.load_base(bl.base_tar())
        tag = f"localhost/bench-{sc.name}:latest"
        argv = tool.build_argv(ctx, tag, jobs=sc.jobs)
        if sc.warm:
            tool.run(argv, log=tool.work / "warm.log")
            if sc.mutate:
                sc.mutate(ctx)
        return tool.run(argv, log=tool.work / "timed.log")
    finally:
        tool.cleanup()


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
    bl.add_bytecode_flag(ap)
    args = ap.parse_args()
    bl.use_kiln_bytecode(not args.kiln_no_bytecode_cache)

    table = scenarios(args.big_size)
    chosen = [s for s in args.scenarios.split(",") if s] or list(table)
    unknown = [s for s in chosen if s not in table]
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(table)}")
    peers = bl.installed_peers([p for p in args.peers.split(",") if p])
    tools = ["kiln", *peers]

    bl.log("warming up kiln (untimed)")
    bl.warm_up_kiln(ctx_medium())
    results: dict[str, dict[str, list[float]]] = {}
    errors: dict[str, dict[str, list[str]]] = {}
    for name in chosen:
        sc = table[name]
        bl.log(f"== {name}: {sc.help}")
        ctx = sc.context()
        results[name] = {t: [] for t in tools}
        for rep in range(args.runs):
            order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
            for t in order:
                try:
                    secs = measure(bl.TOOLS[t], sc, ctx, rep)
                except bl.BenchError as exc:  # counted, and the other runs still go on
                    errors.setdefault(name, {}).setdefault(t, []).append(str(exc))
                    bl.log(f"   run {rep + 1} {t:8s} FAILED\n{exc}")
                    continue
                results[name][t].append(secs)
                bl.log(f"   run {rep + 1} {t:8s} {secs:8.3f} s")

    print(bl.summary_table(results, tools))
    targets = check_targets(results)
    print()
    for line in targets["lines"]:
        print(line)
    if errors:
        fails = [f"{s}/{t} {len(x)}/{args.runs}" for s, e in errors.items() for t, x in e.items()]
        print("\nfailed runs (not in the medians): " + "; ".join(fails))
    payload = {
        "runs": args.runs,
        "jobs": JOBS,
        "kiln_bytecode_cache": not args.kiln_no_bytecode_cache,
        "scenarios": {
            n: {
                "help": table[n].help,
                **table[n].extra,
                "samples": results[n],
                "median": {t: bl.median(v) for t, v in results[n].items()},
                "ratio": {
                    p: bl.ratio(bl.median(results[n]["kiln"]), bl.median(results[n][p]))
                    for p in peers
                },
                "errors": errors.get(n, {}),
            }
            for n in chosen
        },
        "targets": targets["met"],
    }
    print(f"\nwrote {os.path.relpath(bl.write_json('build', payload))}")
    return 0 if all(targets["met"].values()) and not errors else 1


def check_targets(results: dict[str, dict[str, list[float]]]) -> dict:
    met: dict[str, bool] = {}
    lines = []
    for name, per_tool in results.items():
        k, b = bl.median(per_tool.get("kiln", [])), bl.median(per_tool.get("buildah", []))
        if k is not None and b is not None:
            ok = k <= b
            met[f"{name}: kiln <= buildah"] = ok
            lines.append(
                f"[{'MET ' if ok else 'MISS'}] {name}: kiln {k:.3f} s <= buildah {b:.3f} s"
            )
    noop = bl.median(results.get("noop-rebuild", {}).get("kiln", []))
    if noop is not None:
        ok = noop < NOOP_TARGET
        met[f"noop-rebuild: kiln < {NOOP_TARGET} s"] = ok
        lines.append(
            f"[{'MET ' if ok else 'MISS'}] noop-rebuild: kiln {noop:.3f} s < {NOOP_TARGET} s"
        )
    return {"met": met, "lines": lines}


if __name__ == "__main__":
    sys.exit(main())
