"""What each field of kiln's RUN config.json costs runc: ``runc run`` alone, one change at a time.

    python bench/runc_config.py [--runs 30] [VARIANT ...]

Writes the config.json kiln gives runc for ``RUN true`` (kiln's own code: the bundle, its
etc files and ``build_spec``, default settings) over the bench's busybox rootfs, then one
copy per variant with one thing changed, and runs ``runc run`` on each in turn (A B C A B C
...), ``--runs`` times. Prints per variant the median wall and CPU time (user+sys of runc and
everything it started, from ``wait4``) and the difference to kiln's config. ``--help``
lists the variants (``VARIANTS``). A tool, not a test: its numbers depend on how loaded the
machine is (printed beside them); runs as root, in a temporary directory it removes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402

Spec = dict[str, Any]


def _drop_mount(dest: str) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != dest]

    return change


def _fresh_sysfs(spec: Spec) -> None:
    _drop_mount("/sys")(spec)
    spec["mounts"].append({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                           "options": ["nosuid", "noexec", "nodev", "ro"]})  # fmt: skip


def _field(section: str, key: str, value: Any) -> Callable[[Spec], None]:
    """``spec[section][key]`` set to ``value``, or removed when ``value`` is None."""

    def change(spec: Spec) -> None:
        if value is None:
            spec[section].pop(key, None)
        else:
            spec[section][key] = value

    return change


def _seccomp_archs(archs: list[str]) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        spec["linux"]["seccomp"]["architectures"] = archs

    return change


def _namespace(kind: str) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        spec["linux"]["namespaces"].append({"type": kind})

    return change


def _no_masks(spec: Spec) -> None:
    spec["linux"].pop("maskedPaths", None)
    spec["linux"].pop("readonlyPaths", None)


def _no_etc_binds(spec: Spec) -> None:
    spec["mounts"] = [m for m in spec["mounts"] if not m["destination"].startswith("/etc/")]


#: name -> (what it changes, the change). "kiln" is the config as kiln writes it.
VARIANTS: dict[str, tuple[str, Callable[[Spec], None]]] = {
    "kiln": ("kiln's config.json, unchanged", lambda spec: None),
    "no-seccomp": ("no seccomp filter (unconfined)", _field("linux", "seccomp", None)),
    "seccomp-x64": ("the filter for x86_64 only (no i386)", _seccomp_archs(["SCMP_ARCH_X86_64"])),
    "no-devices": ("no devices cgroup rule (resources {})", _field("linux", "resources", {})),
    "cgroup-path": (
        "linux.cgroupsPath names one path",
        _field("linux", "cgroupsPath", "/kiln-bench"),
    ),
    "no-masks": ("no maskedPaths / readonlyPaths", _no_masks),
    "netns": ("a new network namespace too", _namespace("network")),
    "cgroupns": ("a new cgroup namespace too", _namespace("cgroup")),
    "sysfs": ("a fresh sysfs on /sys, not the host's bound", _fresh_sysfs),
    "no-mqueue": ("no /dev/mqueue mount", _drop_mount("/dev/mqueue")),
    "no-etc": ("no /etc/hosts, resolv.conf, hostname binds", _no_etc_binds),
    "no-rlimits": ("no rlimits", _field("process", "rlimits", None)),
    "nnp": ("noNewPrivileges", _field("process", "noNewPrivileges", True)),
    "gomaxprocs1": (
        "GOMAXPROCS=1 in runc's environment (runc init inherits it)",
        lambda spec: None,
    ),
}


def runc_env(variant: str) -> dict[str, str]:
    """runc's environment: kiln's (as kiln runs it), with GOMAXPROCS=1 for ``gomaxprocs1``."""
    return {**os.environ, "GOMAXPROCS": "1"} if variant == "gomaxprocs1" else dict(os.environ)


def kiln_config(rootfs: str) -> Spec:
    """The config.json kiln writes for ``RUN true`` in ``rootfs`` (its etc files stay in
    the bundle, which lives as long as this process)."""
    from kiln.runtime.bundle import prepared
    from kiln.runtime.options import RunOptions
    from kiln.runtime.spec import build_spec

    with prepared(RunOptions(args=["/bin/true"]), rootfs) as p:
        spec = build_spec(p.opts, rootfs, p.user, p.etc_files)
        etc = {name: Path(path).read_bytes() for name, path in p.etc_files.items()}
    return {"spec": spec, "etc": etc}


def run_once(runc: str, state: str, bundle: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one ``runc run``."""
    run_id = "kiln-bench-" + os.urandom(6).hex()
    t = time.perf_counter()
    proc = subprocess.Popen([runc, "--root", state, "run", "--bundle", bundle, run_id],
                            cwd=bundle, stdin=subprocess.DEVNULL, env=env)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise bl.BenchError(f"runc run of {bundle} exited {proc.returncode}")
    return wall * 1000, (usage.ru_utime + usage.ru_stime) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="variants: " + "; ".join(f"{n}: {doc}" for n, (doc, _) in VARIANTS.items()),
    )
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--runtime", default=shutil.which("runc", path="/usr/sbin:/usr/bin") or "runc")
    ap.add_argument("variants", nargs="*", default=list(VARIANTS))
    args = ap.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}: one of {', '.join(VARIANTS)}")
    names = ["kiln", *[v for v in args.variants if v != "kiln"]]
    work = tempfile.mkdtemp(prefix="kiln-runc-config-")
    os.environ["KILN_RUNTIME_DIR"] = os.path.join(work, "runtime")
    try:
        rootfs = os.path.join(work, "rootfs")
        os.makedirs(rootfs)
        with tarfile.open(bl.base_tar()) as tar:
            tar.extractall(rootfs, filter="tar")
        base = kiln_config(rootfs)
        bundles = {}
        for name in names:
            bundle = os.path.join(work, name)
            os.makedirs(bundle)
            spec = copy.deepcopy(base["spec"])
            for mount in spec["mounts"]:  # the etc files, copied beside each config
                if mount["destination"] in base["etc"]:
                    mount["source"] = os.path.join(bundle, os.path.basename(mount["destination"]))
                    Path(mount["source"]).write_bytes(base["etc"][mount["destination"]])
            VARIANTS[name][1](spec)
            Path(bundle, "config.json").write_text(json.dumps(spec))
            bundles[name] = bundle
        state = os.path.join(work, "state")
        envs = {name: runc_env(name) for name in names}
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for name in names:  # warm the page cache: untimed
            run_once(args.runtime, state, bundles[name], envs[name])
        for _ in range(args.runs):
            for name in names:
                samples[name].append(run_once(args.runtime, state, bundles[name], envs[name]))
        load = os.getloadavg()
        print(f"runc run, {args.runs} runs each, alternating; load average {load[0]:.2f} "
              f"{load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; {args.runtime}")  # fmt: skip
        print(
            f"{'variant':12s} {'wall ms':>8s} {'CPU ms':>8s} {'d wall':>8s} {'d CPU':>8s}  change"
        )
        ref_wall = statistics.median(w for w, _ in samples["kiln"])
        ref_cpu = statistics.median(c for _, c in samples["kiln"])
        for name in names:
            wall = statistics.median(w for w, _ in samples[name])
            cpu = statistics.median(c for _, c in samples[name])
            print(f"{name:12s} {wall:8.1f} {cpu:8.1f} {wall - ref_wall:+8.1f} {cpu - ref_cpu:+8.1f}"
                  f"  {VARIANTS[name][0]}")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
