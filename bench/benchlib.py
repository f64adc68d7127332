"""Shared pieces of kiln's side-by-side benchmarks.

Each tool (kiln, buildah, podman) gets its own throw-away store under one short
temporary directory, the busybox base image is loaded into it untimed, and the
timed part is always the wall time of one whole CLI process (``time.perf_counter``
around ``subprocess.run``). Peers always run with ``--runtime runc`` and an
overlay store of their own, so the machine's stores are never touched.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / ".data"  # gitignored: generated inputs, created once
RESULTS_DIR = BENCH_DIR / "results"  # gitignored: one JSON file per run
BASE_REF = "localhost/kiln-bench-base:latest"
PEERS = ("buildah", "podman")

_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


class BenchError(RuntimeError):
    """A tool failed; the message carries the command and the end of its output."""


# --- inputs ------------------------------------------------------------------------------------


def data_dir() -> Path:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    return DATA_DIR


def base_tar() -> Path:
    """A rootfs tar: /bin/busybox, its applet symlinks, /etc/passwd and /etc/group."""
    path = data_dir() / "base-rootfs.tar"
    if path.exists():
        return path
    busybox = shutil.which("busybox") or "/bin/busybox"
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True)
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "tmp", "root"):
            tar.addfile(_info(name, tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755))
        info = _info("bin/busybox", tarfile.REGTYPE, 0o755)
        info.size = os.path.getsize(busybox)
        with open(busybox, "rb") as f:
            tar.addfile(info, f)
        for name in sorted(set(applets.stdout.split()) - {"bin/busybox"}):
            link = _info(name, tarfile.SYMTYPE, 0o777)
            link.linkname = "/bin/busybox"
            tar.addfile(link)
        for name, data in (("etc/passwd", _PASSWD), ("etc/group", _GROUP)):
            info = _info(name, tarfile.REGTYPE, 0o644)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tmp.rename(path)
    return path


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, 0
    info.uname = info.gname = "root"
    return info


def random_file(path: Path, size: int) -> Path:
    """A file of ``size`` random bytes, written once and reused."""
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    chunk = 8 << 20
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n
    tmp.rename(path)
    return path


def small_files(root: Path, count: int, size: int = 256, per_dir: int = 500) -> Path:
    """``count`` files of ``size`` bytes in subdirectories of ``per_dir`` files each."""
    marker = root / ".complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for i in range(count):
        d = root / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_bytes((f"{i:08d}\n".encode() * (size // 9 + 1))[:size])
    marker.write_text("")
    return root


# --- tools -------------------------------------------------------------------------------------


def kiln_command() -> list[str]:
    """The real ``kiln`` entry point (not a pyenv shim, whose bash start-up is not kiln's)."""
    beside = Path(sys.executable).with_name("kiln")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("kiln")
    if found:
        return [found]
    return [sys.executable, "-c", "from kiln.cli.main import main; main()"]


def installed_peers(wanted: list[str]) -> list[str]:
    return [p for p in wanted if shutil.which(p)]


class Tool:
    """One tool with its own store under ``work``; ``argv`` gives a full command line."""

    name = ""

    def __init__(self, work: Path):
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)

    def prefix(self) -> list[str]:
        raise NotImplementedError

    def load_base(self, tar: Path) -> None:
        raise NotImplementedError

    def build_argv(
        self, context: Path, tag: str, *, jobs: int | None = None, dockerfile: Path | None = None
    ) -> list[str]:
        raise NotImplementedError

    def run(self, argv: list[str], *, log: Path | None = None, timeout: float = 3600) -> float:
        """Run ``argv`` to completion and return its wall time in seconds."""
        return timed(self.name, argv, self.env, log or self.work / "last.log", timeout)

    def cleanup(self) -> None:
        unmount_under(self.work)
        shutil.rmtree(self.work, ignore_errors=True)


class Kiln(Tool):
    name = "kiln"
    bytecode = True  # see use_kiln_bytecode()

    def __init__(self, work: Path):
        super().__init__(work)
        self.env["KILN_ROOT"] = str(work / "root")
        if Kiln.bytecode:
            self.env.pop("PYTHONDONTWRITEBYTECODE", None)
            self.env["PYTHONPYCACHEPREFIX"] = str(DATA_DIR / "pycache")

    def prefix(self) -> list[str]:
        return kiln_command()

    def load_base(self, tar: Path) -> None:
        self.run([*self.prefix(), "import", "-q", str(tar), BASE_REF])

    def build_argv(self, context, tag, *, jobs=None, dockerfile=None):
        # kiln's --layers takes a value (podman's also works bare): spell it out.
        argv = [*self.prefix(), "build", "--runtime", "runc", "--layers=true", "--pull=never"]
        if jobs:
            argv += ["--jobs", str(jobs)]
        if dockerfile:
            argv += ["-f", str(dockerfile)]
        return [*argv, "-t", tag, str(context)]


def use_kiln_bytecode(enabled: bool) -> None:
    """Run kiln as an installed package runs: with cached bytecode (the default).

    An installed kiln has .pyc files; an editable checkout under
    PYTHONDONTWRITEBYTECODE=1 recompiles every module on every start (~60-80 ms
    more per command here). With ``enabled``, kiln gets a bytecode cache under
    bench/.data/pycache (PYTHONPYCACHEPREFIX), warmed by an untimed build first.
    """
    Kiln.bytecode = enabled


def add_bytecode_flag(ap) -> None:
    ap.add_argument(
        "--kiln-no-bytecode-cache",
        action="store_true",
        help="run kiln with the environment as it is (e.g. PYTHONDONTWRITEBYTECODE=1: "
        "every module recompiled at every start) instead of with cached bytecode",
    )


def warm_up_kiln(context: Path) -> None:
    """One untimed import and build in a throw-away store: fills the bytecode cache."""
    tool = Kiln(scratch("kb-warm-"))
    try:
        tool.load_base(base_tar())
        tool.run(tool.build_argv(context, "localhost/warm-up:latest"))
    finally:
        tool.cleanup()


class _Containers(Tool):
    """buildah and podman: containers/storage with the overlay driver, in ``work``."""

    def storage(self) -> list[str]:
        return [
            "--root",
            str(self.work / "root"),
            "--runroot",
            str(self.work / "run"),
            "--storage-driver",
            "overlay",
        ]

    def podman_prefix(self) -> list[str]:
        return [
            "podman",
            *self.storage(),
            "--tmpdir",
            str(self.work / "tmp"),
            "--events-backend",
            "file",
            "--cgroup-manager",
            "cgroupfs",
        ]

    def load_base(self, tar: Path) -> None:
        # podman and buildah share containers/storage, so podman's import feeds both.
        self.run([*self.podman_prefix(), "import", "-q", str(tar), BASE_REF])


class Buildah(_Containers):
    name = "buildah"

    def prefix(self) -> list[str]:
        return ["buildah", *self.storage()]

    def build_argv(self, context, tag, *, jobs=None, dockerfile=None):
        argv = [*self.prefix(), "bud", "--runtime", "runc", "--layers", "--pull-never"]
        if jobs:
            argv += ["--jobs", str(jobs)]
        if dockerfile:
            argv += ["-f", str(dockerfile)]
        return [*argv, "-t", tag, str(context)]


class Podman(_Containers):
    name = "podman"

    def prefix(self) -> list[str]:
        return self.podman_prefix()

    def build_argv(self, context, tag, *, jobs=None, dockerfile=None):
        argv = [*self.prefix(), "build", "--runtime", "runc", "--layers", "--pull=never"]
        if jobs:
            argv += ["--jobs", str(jobs)]
        if dockerfile:
            argv += ["-f", str(dockerfile)]
        return [*argv, "-t", tag, str(context)]


def timed(name: str, argv: list[str], env: dict, log: Path, timeout: float = 3600) -> float:
    """Wall time of one whole process; its output goes to ``log``; failure raises BenchError."""
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.run(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            timeout=timeout,
        )
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log.read_bytes()[-3000:].decode(errors="replace")
        raise BenchError(f"{name}: exit {proc.returncode}: {' '.join(argv)}\n{tail}")
    return elapsed


TOOLS: dict[str, type[Tool]] = {"kiln": Kiln, "buildah": Buildah, "podman": Podman}


def unmount_under(path: Path) -> None:
    """Lazily unmount whatever a tool left mounted below ``path`` (deepest first)."""
    prefix = str(path.resolve()) + "/"
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix) or point == prefix[:-1]:
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def scratch(prefix: str = "kb-") -> Path:
    """A short temporary directory (containers/storage wants short runroot paths)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# --- results -----------------------------------------------------------------------------------


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:8.3f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_table(results: dict[str, dict[str, list[float]]], tools: list[str]) -> str:
    """Scenario rows; median seconds per tool, then kiln/peer ratios."""
    peers = [t for t in tools if t != "kiln"]
    head = ["scenario", *[f"{t} s" for t in tools], *[f"kiln/{p}" for p in peers]]
    rows = [head]
    for scenario, per_tool in results.items():
        meds = {t: median(per_tool.get(t, [])) for t in tools}
        rats = [ratio(meds["kiln"], meds[p]) for p in peers]
        rows.append(
            [
                scenario,
                *[fmt_s(meds[t]).strip() for t in tools],
                *["-" if r is None else f"{r:.2f}" for r in rats],
            ]
        )
    return table(rows)


def environment() -> dict:
    versions = {}
    for tool in ("buildah", "podman", "runc"):
        if shutil.which(tool):
            out = subprocess.run([tool, "--version"], capture_output=True, text=True)
            versions[tool] = out.stdout.strip().splitlines()[0] if out.stdout else ""
    git = subprocess.run(
        ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    )
    return {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "kiln_commit": git.stdout.strip(),
        "peers": versions,
    }


def write_json(kind: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    path = RESULTS_DIR / (f"{stamp}.json" if kind == "build" else f"{stamp}-{kind}.json")
    payload = {"kind": kind, "timestamp": stamp, "environment": environment(), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
