"""Shared pieces of kiln's side-by-side benchmarks.

Each tool (kiln, buildah, podman) gets its own throw-away store under one short
temporary directory, the busybox base image is loaded into it untimed, and the
timed part is always the wall time of one whole CLI process (``time.perf_counter``
around it). Peers always run with ``--runtime runc`` and an overlay store of their
own, so the machine's stores are never touched. BuildKit is a warm private dockerd
(``tests/private_dockerd.py``) started once per bench run and stopped by PID.

Beside wall time each sample has the CPU time (user+sys) of the process tree and its
peak RSS: for a CLI tool both come from ``wait4`` (its own and its reaped descendants';
the RSS is the largest single process), for BuildKit the client's plus the daemon
tree's CPU delta and the daemon tree's summed RSS sampled every 0.1 s.
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
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
TESTS_DIR = BENCH_DIR.parent / "tests"  # private_dockerd, registry_servers live there
DATA_DIR = BENCH_DIR / ".data"  # gitignored: generated inputs, created once
RESULTS_DIR = BENCH_DIR / "results"  # gitignored: one JSON file per run
BASE_REF = "localhost/kiln-bench-base:latest"
PEERS = ("buildkit", "buildah", "podman")

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
    return [p for p in wanted if (BuildKit.available() if p == "buildkit" else shutil.which(p))]


class Tool:
    """One tool with its own store under ``work``; ``argv`` gives a full command line."""

    name = ""
    #: one store for every sample (BuildKit's daemon): an earlier sample's cache is still
    #: there until the scenario ends, so a first build must not use it (``no_cache``)
    shared_store = False

    def __init__(self, work: Path):
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)

    def prefix(self) -> list[str]:
        raise NotImplementedError

    def load_base(self, tar: Path) -> None:
        raise NotImplementedError

    def build_argv(
        self,
        context: Path,
        tag: str,
        *,
        jobs: int | None = None,
        dockerfile: Path | None = None,
        no_cache: bool = False,
    ) -> list[str]:
        """The build command; ``no_cache``: reuse no cached step (BuildKit's shared daemon
        keeps an earlier sample's cache until the scenario ends)."""
        raise NotImplementedError

    def run(self, argv: list[str], *, log: Path | None = None, timeout: float = 3600) -> float:
        """Run ``argv`` to completion and return its wall time in seconds."""
        return self.measure(argv, log=log, timeout=timeout).wall

    def measure(self, argv: list[str], *, log: Path | None = None, timeout: float = 3600) -> Sample:
        """Run ``argv`` to completion: wall time, CPU time and peak RSS."""
        return timed_sample(self.name, argv, self.env, log or self.work / "last.log", timeout)

    def push_argv(self, image: str, dest: str) -> list[str]:
        """Push local ``image`` to ``dest`` (HOST/REPO:TAG on a plain-HTTP registry)."""
        return [*self.prefix(), "push", "--tls-verify=false", image, f"docker://{dest}"]

    def pull_argv(self, ref: str) -> list[str]:
        return [*self.prefix(), "pull", "--tls-verify=false", ref]

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

    def build_argv(self, context, tag, *, jobs=None, dockerfile=None, no_cache=False):
        # kiln's --layers takes a value (podman's also works bare): spell it out.
        argv = [*self.prefix(), "build", "--runtime", "runc", "--layers=true", "--pull=never"]
        if jobs:
            argv += ["--jobs", str(jobs)]
        if dockerfile:
            argv += ["-f", str(dockerfile)]
        if no_cache:
            argv.append("--no-cache")
        return [*argv, "-t", tag, str(context)]


class KilnBase(Kiln):
    """kiln run from another checkout's ``src`` directory (``--kiln-base DIR``, e.g. a
    ``git archive main src`` unpacked somewhere): the code before a change, measured
    interleaved with the code after it, as one more peer (ratios: kiln / kiln-base)."""

    name = "kiln-base"
    src: str | None = None

    def __init__(self, work: Path):
        super().__init__(work)
        if self.src:
            self.env["PYTHONPATH"] = self.src


def add_kiln_base_flag(ap) -> None:
    ap.add_argument(
        "--kiln-base",
        metavar="SRC",
        default="",
        help="also run kiln from this src directory as the peer 'kiln-base' (before/after)",
    )


def use_kiln_base(src: str) -> list[str]:
    """Register ``--kiln-base``: the peers list to add (empty without one)."""
    if not src:
        return []
    KilnBase.src = os.path.abspath(src)
    return ["kiln-base"]


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


def warm_up_kiln(context: Path, deferred: Deferred | None = None) -> None:
    """One untimed import and build in a throw-away store: fills the bytecode cache. With
    ``deferred``, the store is deleted when that is flushed, not right before a timed run."""
    for cls in (Kiln, KilnBase) if KilnBase.src else (Kiln,):
        tool = cls(scratch("kb-warm-"))
        try:
            tool.load_base(base_tar())
            tool.run(tool.build_argv(context, "localhost/warm-up:latest"))
        finally:
            if deferred is not None:
                deferred.add(tool)
            else:
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

    def build_argv(self, context, tag, *, jobs=None, dockerfile=None, no_cache=False):
        argv = [*self.prefix(), "bud", "--runtime", "runc", "--layers", "--pull-never"]
        if jobs:
            argv += ["--jobs", str(jobs)]
        if dockerfile:
            argv += ["-f", str(dockerfile)]
        if no_cache:
            argv.append("--no-cache")
        return [*argv, "-t", tag, str(context)]


class Podman(_Containers):
    name = "podman"

    def prefix(self) -> list[str]:
        return self.podman_prefix()

    def build_argv(self, context, tag, *, jobs=None, dockerfile=None, no_cache=False):
        argv = [*self.prefix(), "build", "--runtime", "runc", "--layers", "--pull=never"]
        if jobs:
            argv += ["--jobs", str(jobs)]
        if dockerfile:
            argv += ["-f", str(dockerfile)]
        if no_cache:
            argv.append("--no-cache")
        return [*argv, "-t", tag, str(context)]


@dataclass
class Sample:
    """One timed command: wall seconds, CPU seconds (user+sys) of its process tree, peak RSS
    in bytes (see the module's docstring for what the tree is for each tool)."""

    wall: float
    cpu: float = 0.0
    rss: int = 0


def timed(name: str, argv: list[str], env: dict, log: Path, timeout: float = 3600) -> float:
    """Wall time of one whole process; its output goes to ``log``; failure raises BenchError."""
    return timed_sample(name, argv, env, log, timeout).wall


def timed_sample(name: str, argv: list[str], env: dict, log: Path, timeout: float = 3600) -> Sample:
    """``timed``, with CPU time and peak RSS of the process and its reaped descendants."""
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_bytes()[-3000:].decode(errors="replace")
        raise BenchError(f"{name}: exit {proc.returncode}: {' '.join(argv)}\n{tail}")
    return Sample(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)


class BuildKit(Tool):
    """BuildKit in a warm private dockerd (Debian's docker.io 20.10, ``DOCKER_BUILDKIT=1``),
    shared by every sample of a bench run: ``start_daemon`` once, ``stop_daemon`` at the end.
    ``cleanup`` removes every image but the base and all build cache; the benches call it
    when a scenario ends (deleting a tree before another tool's timed run would charge that
    tool the file system's cost of the deletion), so a first build in a later sample runs
    with ``--no-cache`` instead (``shared_store``)."""

    name = "buildkit"
    shared_store = True
    daemon = None  # private_dockerd.Dockerd

    @classmethod
    def available(cls) -> bool:
        return _private_dockerd().Dockerd.available()

    @classmethod
    def start_daemon(cls) -> None:
        if cls.daemon is None:
            work = scratch("kb-dockerd-")
            cls.daemon = _private_dockerd().Dockerd(str(work))
            cls.daemon.start()

    @classmethod
    def stop_daemon(cls) -> None:
        if cls.daemon is not None:
            work = Path(cls.daemon.work)
            cls.daemon.stop()  # by PID: SIGTERM, then SIGKILL
            cls.daemon = None
            unmount_under(work)
            shutil.rmtree(work, ignore_errors=True)

    def __init__(self, work: Path):
        super().__init__(work)
        if BuildKit.daemon is None:
            raise BenchError("buildkit: the private dockerd is not running (start_daemon)")
        self.env = dict(BuildKit.daemon.env)

    def prefix(self) -> list[str]:
        return BuildKit.daemon.argv()

    def load_base(self, tar: Path) -> None:
        if BuildKit.daemon.docker("image", "inspect", BASE_REF, check=False).returncode != 0:
            self.run([*self.prefix(), "import", str(tar), BASE_REF])

    def build_argv(self, context, tag, *, jobs=None, dockerfile=None, no_cache=False):
        # BuildKit runs independent stages in parallel by itself: no --jobs. The daemon
        # has no bridge (--bridge=none): RUN shares the host's network, as kiln's RUN does
        argv = [*self.prefix(), "build", "--progress", "plain", "--network", "host"]
        if dockerfile:
            argv += ["-f", str(dockerfile)]
        if no_cache:
            argv.append("--no-cache")
        return [*argv, "-t", tag, str(context)]

    def push_argv(self, image: str, dest: str) -> list[str]:
        # dockerd treats 127.0.0.0/8 registries as insecure (plain HTTP) by default
        return [*self.prefix(), "push", dest]

    def tag_argv(self, image: str, dest: str) -> list[str]:
        return [*self.prefix(), "tag", image, dest]

    def pull_argv(self, ref: str) -> list[str]:
        return [*self.prefix(), "pull", "-q", ref]

    def measure(self, argv: list[str], *, log: Path | None = None, timeout: float = 3600) -> Sample:
        pid = BuildKit.daemon.pid
        before = tree_cpu(pid)
        peak = RssSampler(pid)
        with peak:
            sample = super().measure(argv, log=log, timeout=timeout)
        sample.cpu += tree_cpu(pid) - before
        sample.rss = max(sample.rss, peak.peak)
        return sample

    def cleanup(self) -> None:
        """Every image but the base and all build cache go: the next sample starts empty."""
        d = BuildKit.daemon
        if d is None:  # stopped: its data-root went with it
            shutil.rmtree(self.work, ignore_errors=True)
            return
        out = d.docker("images", "-q", "--no-trunc", check=False).stdout.decode().split()
        base = d.docker("images", "-q", "--no-trunc", BASE_REF, check=False).stdout.decode()
        doomed = sorted(set(out) - set(base.split()))
        if doomed:
            d.docker("rmi", "-f", *doomed, check=False)
        d.docker("builder", "prune", "-af", check=False)
        shutil.rmtree(self.work, ignore_errors=True)


def _private_dockerd():
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    import private_dockerd

    return private_dockerd


def _tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu(pid: int) -> float:
    """user+sys seconds of ``pid``'s live tree, its reaped children's included."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def tree_rss(pid: int) -> int:
    """Summed resident bytes of ``pid``'s live tree."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


class RssSampler:
    """The peak of ``tree_rss(pid)`` while the ``with`` block runs, sampled every 0.1 s."""

    def __init__(self, pid: int, every: float = 0.1):
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            self.peak = max(self.peak, tree_rss(self.pid))
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, tree_rss(self.pid))


TOOLS: dict[str, type[Tool]] = {
    "kiln": Kiln, "kiln-base": KilnBase, "buildkit": BuildKit, "buildah": Buildah,
    "podman": Podman,
}  # fmt: skip


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


# --- the file system's state -------------------------------------------------------------------
#
# Creating a file costs what the file system charges for a new inode at that moment, and
# that swings: ext4 skips inodes freed a short while ago when it allocates one, and an
# fsync commits every other process's dirty metadata with it. Whoever runs right after a
# big tree was deleted pays for it. So the benches never delete a tree between timed runs
# (stores are kept until a scenario ends: ``Deferred``), let the disk settle after
# deleting, and print a probe of the creation cost beside the numbers.

PROBE_FILES = 100  # files per probe: a tenth of a second or so on a quiet disk


@dataclass
class Probe:
    """Microseconds per file to create (``O_CREAT|O_EXCL``) and close an empty file, and
    with an fsync before the close, each the mean over a probe's files."""

    create_us: float
    fsync_us: float


def create_probe(beside: Path, count: int = PROBE_FILES, *, fsync: bool = True) -> Probe:
    """What the file system charges per new file right now, in a new directory under
    ``beside`` (``count`` files without fsync, then ``count`` with: the fsync shows how
    much dirty metadata is waiting). The files are left in place: removing them now would
    land on the run this probe is for; they go with ``beside``."""
    d = Path(tempfile.mkdtemp(prefix="create-probe-", dir=beside))
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        costs = []
        for synced in (False, True) if fsync else (False,):
            start = time.perf_counter()
            for i in range(count):
                fd = os.open(f"{'s' if synced else 'f'}{i}",
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dfd)  # fmt: skip
                if synced:
                    os.fsync(fd)
                os.close(fd)
            costs.append((time.perf_counter() - start) / count * 1e6)
    finally:
        os.close(dfd)
    return Probe(costs[0], costs[1] if fsync else 0.0)


class Deferred:
    """Trees to delete once the timed runs they could skew are over: tools' stores (their
    ``cleanup``) and plain directories; ``flush`` removes them all, then waits ``settle``
    seconds so the deletion's cost to the file system is paid before the next timed run."""

    def __init__(self) -> None:
        self.tools: list[Tool] = []
        self.dirs: list[Path] = []

    def add(self, item: Tool | Path) -> None:
        (self.tools if isinstance(item, Tool) else self.dirs).append(item)

    def flush(self, settle: float = 0.0) -> None:
        tools, dirs = self.tools, self.dirs
        self.tools, self.dirs = [], []
        for tool in tools:
            try:
                tool.cleanup()
            except (BenchError, OSError, subprocess.SubprocessError) as exc:
                log(f"   cleanup of {tool.name} failed: {exc}")
        for d in dirs:
            unmount_under(d)
            shutil.rmtree(d, ignore_errors=True)
        if (tools or dirs) and settle > 0:
            time.sleep(settle)


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


def summary_table(results: dict[str, dict[str, list]], tools: list[str]) -> str:
    """Scenario rows: median wall seconds per tool, kiln/peer ratios of them, then (when
    the samples are ``Sample``s) kiln's and each peer's median CPU seconds and peak RSS."""
    peers = [t for t in tools if t != "kiln"]
    detailed = any(
        isinstance(x, Sample) for per in results.values() for v in per.values() for x in v
    )
    head = ["scenario", *[f"{t} s" for t in tools], *[f"kiln/{p}" for p in peers]]
    if detailed:
        head += [f"{t} cpu s" for t in tools] + [f"{t} MB" for t in tools]
    rows = [head]
    for scenario, per_tool in results.items():
        walls = {t: median([wall_of(x) for x in per_tool.get(t, [])]) for t in tools}
        rats = [ratio(walls["kiln"], walls[p]) for p in peers]
        row = [
            scenario,
            *[fmt_s(walls[t]).strip() for t in tools],
            *["-" if r is None else f"{r:.2f}" for r in rats],
        ]
        if detailed:
            cpus = {t: median([x.cpu for x in per_tool.get(t, [])]) for t in tools}
            rss = {t: max((x.rss for x in per_tool.get(t, [])), default=0) for t in tools}
            row += [fmt_s(cpus[t]).strip() for t in tools]
            row += [f"{rss[t] / 1e6:.0f}" if rss[t] else "-" for t in tools]
        rows.append(row)
    return table(rows)


def overhead_table(
    results: dict[str, dict[str, list]], tools: list[str], floors: dict[str, float]
) -> str:
    """For the scenarios with a floor (the least time any tool can take, e.g. the sleeps of
    parallel stages): each tool's median wall time beyond it, and kiln's over each peer's.
    Where the floor is most of the time, the ratio of walls says little; this one says
    whose overhead is larger."""
    peers = [t for t in tools if t != "kiln"]
    rows = [["scenario", "floor s", *[f"{t} over s" for t in tools],
             *[f"kiln/{p} over" for p in peers]]]  # fmt: skip
    for scenario, floor in floors.items():
        per_tool = results.get(scenario, {})
        over = {}
        for t in tools:
            wall = median([wall_of(x) for x in per_tool.get(t, [])])
            over[t] = None if wall is None else wall - floor
        rats = [ratio(over["kiln"], over[p]) for p in peers]
        rows.append([scenario, f"{floor:.3f}", *[fmt_s(over[t]).strip() for t in tools],
                     *["-" if r is None else f"{r:.2f}" for r in rats]])  # fmt: skip
    return table(rows)


def probe_line(p: Probe) -> str:
    return f"new file {p.create_us:.0f} us, +fsync {p.fsync_us:.0f} us"


def median_probe(probes: list[Probe]) -> Probe | None:
    if not probes:
        return None
    return Probe(median([p.create_us for p in probes]), median([p.fsync_us for p in probes]))


def wall_of(x) -> float:
    return x.wall if isinstance(x, Sample) else x


def load_line() -> str:
    """``uptime``'s load averages and the core count, to print beside the numbers."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def environment() -> dict:
    versions = {}
    for tool in ("buildah", "podman", "runc", "dockerd"):
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
