"""kiln save/load vs podman save/load (docker-archive) of a 1 GiB image.

    python bench/store_bench.py [--runs N] [--size BYTES] [--peers podman]

The image is one layer: the busybox base rootfs plus one file of random bytes,
imported (untimed) from the same tar into each tool's fresh store. Timed: ``save``
of that image to a docker-archive, then ``load`` of the archive the same tool wrote
into a fresh, empty store. Prints medians and kiln/peer ratios; writes
bench/results/<stamp>-store.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402

REF = "localhost/kiln-bench-big:latest"


def image_tar(size: int) -> Path:
    """The base rootfs plus ``/big.bin`` (random, ``size`` bytes), as one tar, made once."""
    path = bl.data_dir() / f"big-rootfs-{size}.tar"
    if path.exists():
        return path
    tmp = path.with_name(path.name + ".tmp")
    with (
        tarfile.open(bl.base_tar()) as src,
        tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out,
    ):
        for member in src:
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo("big.bin")
        info.size, info.mode, info.mtime, info.uname, info.gname = size, 0o644, 0, "root", "root"
        out.addfile(info, _RandomReader(size))
    tmp.rename(path)
    return path


class _RandomReader:
    """A file-like object of ``size`` random bytes, made as they are read."""

    def __init__(self, size: int):
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)


def save_argv(tool: bl.Tool, archive: Path) -> list[str]:
    return [*tool.prefix(), "save", "-q", "--format", "docker-archive", "-o", str(archive), REF]


def load_argv(tool: bl.Tool, archive: Path) -> list[str]:
    return [*tool.prefix(), "load", "-q", "-i", str(archive)]


def import_argv(tool: bl.Tool, tar: Path) -> list[str]:
    if tool.name == "kiln":
        return [*tool.prefix(), "import", "-q", str(tar), REF]
    return [*tool.podman_prefix(), "import", "-q", str(tar), REF]


def one_round(name: str, tar: Path) -> dict:
    cls = bl.TOOLS[name]
    src = cls(bl.scratch(f"ks-{name[:2]}-"))
    dst = cls(bl.scratch(f"kl-{name[:2]}-"))
    try:
        src.run(import_argv(src, tar))
        archive = src.work / "image.tar"
        save = src.run(save_argv(src, archive), log=src.work / "save.log")
        size = archive.stat().st_size
        load = dst.run(load_argv(dst, archive), log=dst.work / "load.log")
        return {"save": save, "load": load, "archive_bytes": size}
    finally:
        src.cleanup()
        dst.cleanup()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=1 << 30, help="random bytes in the image")
    ap.add_argument("--peers", default="podman")
    bl.add_bytecode_flag(ap)
    args = ap.parse_args()
    bl.use_kiln_bytecode(not args.kiln_no_bytecode_cache)
    tools = ["kiln", *bl.installed_peers([p for p in args.peers.split(",") if p == "podman"])]
    tar = image_tar(args.size)

    bl.log("warming up kiln (untimed)")
    one_round("kiln", bl.base_tar())
    samples = {op: {t: [] for t in tools} for op in ("save", "load")}
    sizes: dict[str, int] = {}
    errors: dict[str, list[str]] = {}
    for rep in range(args.runs):
        order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
        for t in order:
            try:
                r = one_round(t, tar)
            except bl.BenchError as exc:  # counted, and the other runs still go on
                errors.setdefault(t, []).append(str(exc))
                bl.log(f"   run {rep + 1} {t:7s} FAILED\n{exc}")
                continue
            samples["save"][t].append(r["save"])
            samples["load"][t].append(r["load"])
            sizes[t] = r["archive_bytes"]
            bl.log(f"   run {rep + 1} {t:7s} save {r['save']:7.3f} s  load {r['load']:7.3f} s")

    label = f"{args.size / 2**30:g} GiB"
    results = {f"save {label}": samples["save"], f"load {label}": samples["load"]}
    print(bl.summary_table(results, tools))
    print("\narchive sizes: " + ", ".join(f"{t} {n / 2**20:.0f} MiB" for t, n in sizes.items()))
    if errors:
        print("failed runs: " + "; ".join(f"{t} {len(x)}/{args.runs}" for t, x in errors.items()))
    met = {}
    for scenario, per_tool in results.items():
        for p in tools[1:]:
            k, o = bl.median(per_tool["kiln"]), bl.median(per_tool[p])
            if k is not None and o is not None:
                met[f"{scenario}: kiln <= {p}"] = k <= o
                print(
                    f"[{'MET ' if k <= o else 'MISS'}] {scenario}: kiln {k:.3f} s <= {p} {o:.3f} s"
                )
    payload = {
        "runs": args.runs,
        "kiln_bytecode_cache": not args.kiln_no_bytecode_cache,
        "bytes": args.size,
        "archive_bytes": sizes,
        "scenarios": {
            n: {
                "samples": v,
                "median": {t: bl.median(x) for t, x in v.items()},
                "ratio": {p: bl.ratio(bl.median(v["kiln"]), bl.median(v[p])) for p in tools[1:]},
            }
            for n, v in results.items()
        },
        "targets": met,
        "errors": errors,
    }
    print(f"\nwrote {os.path.relpath(bl.write_json('store', payload))}")
    return 0 if all(met.values()) and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
