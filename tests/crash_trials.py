"""SIGKILL trials: run a kiln command, kill it at a random moment, and check what is left.

Shared by ``tests/integration/test_crash_trials.py`` (a few seeded trials in CI) and
``bench/crash_soak.py`` (as many as asked). A trial:

1. ``prepare`` puts the store in the state the operation needs (not killed);
2. the reference is taken: every tagged image's manifest digest;
3. the operation starts as its own ``kiln`` process and is SIGKILLed after a random delay
   within its measured duration (the kiln process alone, as the OOM killer does, or its
   whole process group, as a lost CI runner does);
4. the next kiln command (``kiln images``) must work; then ``kiln system check --repair``
   clears what the killed one left (what the next build or prune would clear for users),
   after which no mount, RUN bundle, running RUN container or temp dir of kiln may be
   left, a second ``kiln system check`` and the store's fsck are clean
   (``store_problems``) and every tagged image reads back: names the operation does not
   touch keep their manifest digest, every image validates (each blob re-hashed against
   its manifest) and every unpacked layer matches its diff ID.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mount_points import mount_points_under

CONTAINERFILE = """FROM busybox
COPY data /data
RUN echo {marker} && sleep 0.3 && head -c 2000000 /dev/urandom > /data/run1
COPY more /more
RUN echo {marker} && sleep 0.2 && cat /data/* > /data/run2
"""


@dataclass
class Op:
    name: str
    argv: Callable[[Bench, int], list[str]]  # (bench, trial number) -> kiln arguments
    prepare: Callable[[Bench, int], None] = lambda b, n: None
    touches: Callable[[Bench], set[str]] = lambda b: set()  # names it may change or remove
    repoints: bool = False  # stores the base image (same ID) under another manifest (pull)
    duration: float = 0.0  # measured by calibrate()


@dataclass
class Bench:
    """One store, runtime dir, temp dir and registry for all trials."""

    workdir: str
    registry: str  # "127.0.0.1:PORT", plain http
    seed: int = 0
    rng: random.Random = field(init=False)
    startup: float = 0.0  # a kiln command that does nothing much: kills before it are wasted
    base_id: str = ""
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.root = os.path.join(self.workdir, "root")
        self.runtime_dir = os.path.join(self.workdir, "run")
        self.tmpdir = os.path.join(self.workdir, "tmp")
        self.ctx = os.path.join(self.workdir, "ctx")
        self.archive = os.path.join(self.workdir, "loaded.docker.tar")
        # in every RUN command of these trials: a RUN still running is found by it
        self.marker = f"kiln-crash-trial-{os.getpid()}-{self.seed}-{time.time_ns()}"
        for d in (self.tmpdir, self.ctx):
            os.makedirs(d, exist_ok=True)
        self.env = dict(
            os.environ, KILN_ROOT=self.root, KILN_RUNTIME_DIR=self.runtime_dir,
            KILN_TMPDIR=self.tmpdir, TMPDIR=self.tmpdir,
        )  # fmt: skip

    # ---- running kiln ----

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "kiln.cli.main", *args]

    def kiln(self, *args: str, check: bool = True, timeout: float = 300):
        proc = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"kiln {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def start(self, args: list[str]) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip

    def ref(self, repo: str) -> str:
        return f"docker://{self.registry}/{repo}"

    # ---- the world the trials run in ----

    def setup(self, rootfs_tar: str) -> None:
        """busybox, a context, a base image built from it (pushed, saved), a victim tag."""
        data = os.path.join(self.ctx, "data")
        more = os.path.join(self.ctx, "more")
        os.makedirs(data, exist_ok=True)
        os.makedirs(more, exist_ok=True)
        rnd = random.Random(self.seed + 1)
        for i in range(4):
            with open(os.path.join(data, f"f{i}"), "wb") as f:
                f.write(rnd.randbytes(1_000_000))
        for i in range(200):
            with open(os.path.join(more, f"s{i}"), "w") as f:
                f.write(f"small {i}\n")
        with open(os.path.join(self.ctx, "Containerfile"), "w") as f:
            f.write(CONTAINERFILE.format(marker=self.marker))
        self.kiln("import", rootfs_tar, "busybox")
        self.kiln("build", "--runtime", "runc", "-t", "crash/base", self.ctx)
        self.kiln("tag", "crash/base", "crash/victim")
        self.base_id = tagged_images(self.root)["localhost/crash/base:latest"][1]
        self.kiln("push", "--tls-verify=false", "crash/base", self.ref("crash/base:1"))
        # another encoding of the same layers (uncompressed), for load
        self.kiln("tag", "crash/base", "crash/loaded")
        self.kiln("save", "--format", "docker-archive", "-o", self.archive, "crash/loaded")
        self.kiln("rmi", "crash/loaded")

    def calibrate(self, ops: list[Op]) -> None:
        """Each operation once, not killed: it must work, and its time bounds the kills."""
        t0 = time.monotonic()
        self.kiln("version")
        self.startup = time.monotonic() - t0
        for n, op in enumerate(ops):
            op.prepare(self, -1 - n)
            t0 = time.monotonic()
            self.kiln(*op.argv(self, -1 - n))
            op.duration = time.monotonic() - t0

    # ---- one trial ----

    def trial(self, op: Op, n: int) -> list[str]:
        """Kill ``op`` once at a random moment; the problems found (empty: all well)."""
        op.prepare(self, n)
        before = tagged_images(self.root)
        touched = op.touches(self)
        delay = self.rng.uniform(min(self.startup, op.duration) * 0.7, op.duration * 1.05)
        group = self.rng.random() < 0.5
        proc = self.start(op.argv(self, n))
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=60)
        where = f"{op.name} #{n} killed at {delay:.2f}s/{op.duration:.2f}s" + (
            " (process group)" if group else ""
        )
        if code != -signal.SIGKILL:
            where += f" (had ended first: exit {code})"
        self.log.append(where)
        nxt = self.kiln("images", check=False)
        if nxt.returncode != 0:
            return [f"{where}: the next command failed: {nxt.stderr.strip()}"]
        repair = self.kiln("system", "check", "--repair", check=False)
        if repair.returncode != 0:
            return [
                f"{where}: check --repair failed: {repair.stdout.strip()} {repair.stderr.strip()}"
            ]
        problems = leftovers(self) + store_problems(self)
        repoints = self.base_id if op.repoints else ""
        problems += image_problems(self.root, before, touched, repoints)
        return [f"{where}: {p}" for p in problems]


# ---- checks ---------------------------------------------------------------------------


def tagged(root: str) -> dict[str, str]:
    """Every tagged name -> its image's manifest digest."""
    return {name: digest for name, (digest, _id) in tagged_images(root).items()}


def tagged_images(root: str) -> dict[str, tuple[str, str]]:
    """Every tagged name -> (its image's manifest digest, the image ID)."""
    from kiln.store import Store

    store = Store.open(root)
    try:
        return {
            name: (rec.manifest_digest, rec.id) for rec in store.list_images() for name in rec.names
        }
    finally:
        store.close()


def _marker_processes(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


@contextlib.contextmanager
def bench_with_registry(
    tmp: str, make: Callable[[str, str], Any], cleanup_bench: Callable[[Any], None]
) -> Any:
    """A trials' bench on a store in ``tmp``, set up with the busybox image, and a private
    docker-registry; ``make(root, registry_host)`` builds it. Both go when the block ends."""
    from fixtures_images import make_busybox_rootfs
    from registry_servers import start_registry

    with start_registry("plain", os.path.join(tmp, "registry")) as reg:
        bench = make(os.path.join(tmp, "bench"), reg.host)
        try:
            bench.setup(make_busybox_rootfs(os.path.join(tmp, "rootfs.tar")))
            yield bench
        finally:
            cleanup_bench(bench)


def runtime_left(bench: Any, wait: float) -> list[str]:
    """What a stopped kiln left outside its store: mounts, RUN bundles, runc containers, RUN
    processes (given ``wait`` seconds to go: a killed container's take a moment), temp files.
    ``bench``: a crash or an interrupt trials' bench (root, runtime_dir, tmpdir, marker)."""
    problems = []
    mounts = mount_points_under(bench.root, bench.runtime_dir, bench.tmpdir)
    if mounts:
        problems.append(f"mounts left: {mounts}")
    bundles = os.path.join(bench.runtime_dir, "bundles")
    if os.path.isdir(bundles) and os.listdir(bundles):
        problems.append(f"bundles left: {os.listdir(bundles)}")
    state = os.path.join(bench.runtime_dir, "runc")
    if os.path.isdir(state):
        listed = subprocess.run(["runc", "--root", state, "list", "-q"], capture_output=True,
                                text=True, timeout=30, check=False).stdout.split()  # fmt: skip
        if listed:
            problems.append(f"runc containers left: {listed}")
    deadline = time.monotonic() + wait
    while _marker_processes(bench.marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _marker_processes(bench.marker):
        problems.append(f"RUN processes still running: {_marker_processes(bench.marker)}")
    if os.listdir(bench.tmpdir):
        problems.append(f"temp files left in the temp dir: {sorted(os.listdir(bench.tmpdir))}")
    return problems


def leftovers(bench: Bench) -> list[str]:
    """What a killed kiln left that the next command did not clear."""
    problems = runtime_left(bench, 20)
    snap_tmp = os.path.join(bench.root, "snapshots", "tmp")
    if os.path.isdir(snap_tmp) and os.listdir(snap_tmp):
        # a sweep killed midway leaves what it was deleting in snapshots/tmp: garbage by
        # design (nothing refers to it), which the next collection must remove
        bench.kiln("image", "prune", "-f")
        if os.listdir(snap_tmp):
            problems.append(f"snapshot temp dirs survive a prune: {os.listdir(snap_tmp)}")
    containers = json.loads(bench.kiln("containers", "--json").stdout or "[]")
    names = [c.get("containername") for c in containers]
    # a user's own container (``kiln from``, the commit trials') stays; a build's must go
    others = [n for n in names if not str(n).startswith("crash-commit-")]
    if others:
        problems.append(f"working containers left: {others}")
    return problems


def store_problems(bench: Bench) -> list[str]:
    """``kiln system check`` (after the repair: it must find nothing) and the store's fsck."""
    from kiln.store import Store

    problems = []
    check = bench.kiln("system", "check", check=False)
    if check.returncode != 0:
        problems.append(
            f"system check after --repair: {check.stdout.strip()} {check.stderr.strip()}"
        )
    store = Store.open(bench.root)
    try:
        return problems + [f"fsck: {p}" for p in store.fsck()]
    finally:
        store.close()


def image_problems(
    root: str, before: dict[str, tuple[str, str]], touched: set[str], repoints: str = ""
) -> list[str]:
    """Every tagged image reads back: untouched names keep their image and manifest (an
    operation that stores image ``repoints`` under another manifest, as a pull of the same
    config in another encoding does, moves every name of that image with it),
    every image validates, every unpacked layer matches its diff ID."""
    from kiln.errors import KilnError
    from kiln.image import validate_image
    from kiln.snapshot import Snapshotter
    from kiln.store import Store
    from snapshot_layers import layer_mismatches

    problems = []
    now = tagged_images(root)
    for name, (digest, image_id) in before.items():
        if name in touched:
            continue
        new_digest, new_id = now.get(name, ("", ""))
        if new_id != image_id:
            problems.append(f"{name} was image {image_id}, now {new_id or 'gone'}")
        elif new_digest != digest and image_id != repoints:
            problems.append(f"{name} was manifest {digest}, now {new_digest}")
    store = Store.open(root)
    try:
        for name, (digest, _id) in sorted(now.items()):
            try:
                validate_image(store, digest)
            except KilnError as e:
                problems.append(f"{name} ({digest}) does not read back: {e}")
        snaps = Snapshotter(os.path.join(root, "snapshots"))
        try:
            problems += [f"unpacked layer: {m}" for m in layer_mismatches(store, snaps)]
        finally:
            snaps.close()
    finally:
        store.close()
    return problems


# ---- the operations ---------------------------------------------------------------------


def _rmi_quietly(bench: Bench, *names: str) -> None:
    bench.kiln("rmi", "-f", *names, check=False)


def _prepare_pull(bench: Bench, n: int) -> None:
    _rmi_quietly(bench, f"{bench.registry}/crash/base:1")


def _prepare_load(bench: Bench, n: int) -> None:
    _rmi_quietly(bench, "crash/loaded")


def _prepare_commit(bench: Bench, n: int) -> None:
    # the container a killed commit left is the user's and still works: remove it
    bench.kiln("rm", "--all")
    name = f"crash-commit-{n}".replace("--", "-m")
    bench.kiln("from", "--name", name, "busybox")
    bench.kiln("run", "--runtime", "runc", name, "--", "sh", "-c",
               "head -c 3000000 /dev/urandom > /big && mkdir -p /d && cp -r /bin /d/")  # fmt: skip


def _commit_argv(bench: Bench, n: int) -> list[str]:
    return ["commit", "--rm", f"crash-commit-{n}".replace("--", "-m"), "crash/committed"]


def _prepare_prune(bench: Bench, n: int) -> None:
    # two dangling images: a build's untagged result, and an image whose tag moved
    bench.kiln("build", "--runtime", "runc", "--build-arg", f"N={n}", "-f",
               os.path.join(bench.workdir, "Containerfile.prune"), bench.ctx)  # fmt: skip


def _named(bench: Bench, part: str) -> set[str]:
    return {k for k in tagged(bench.root) if part in k}


def _prepare_rmi(bench: Bench, n: int) -> None:
    if not _named(bench, "crash/victim"):
        bench.kiln("tag", "crash/base", "crash/victim")


def _build_argv(bench: Bench, n: int) -> list[str]:
    return ["build", "--runtime", "runc", "--no-cache", "-t", "crash/built", bench.ctx]


def _push_argv(bench: Bench, n: int) -> list[str]:
    return ["push", "--tls-verify=false", "crash/base", bench.ref(f"crash/pushed{abs(n)}:1")]


def operations(bench: Bench) -> list[Op]:
    with open(os.path.join(bench.workdir, "Containerfile.prune"), "w") as f:
        f.write("FROM busybox\nARG N\nRUN echo $N > /n && head -c 1500000 /dev/urandom > /r\n")
    pulled = f"{bench.registry}/crash/base:1"
    return [
        Op("build", _build_argv, touches=lambda b: _named(b, "crash/built")),
        Op(
            "pull",
            lambda b, n: ["pull", "--tls-verify=false", f"docker://{pulled}"],
            _prepare_pull,
            lambda b: {pulled},
            repoints=True,
        ),
        Op("push", _push_argv),
        Op(
            "load",
            lambda b, n: ["load", "-i", b.archive],
            _prepare_load,
            lambda b: _named(b, "crash/loaded"),
        ),  # the base keeps its manifest: a load of a stored image only adds its names
        Op("commit", _commit_argv, _prepare_commit, lambda b: _named(b, "crash/committed")),
        Op("prune", lambda b, n: ["image", "prune", "-f"], _prepare_prune),
        Op(
            "rmi",
            lambda b, n: ["rmi", "crash/victim"],
            _prepare_rmi,
            lambda b: _named(b, "crash/victim"),
        ),
    ]


def cleanup(bench: Bench) -> None:
    """Unmount and remove what the trials made (after a failure too)."""
    for point in sorted(mount_points_under(bench.root, bench.runtime_dir, bench.tmpdir), key=len,
                        reverse=True):  # fmt: skip
        subprocess.run(["umount", "-l", point], check=False, timeout=30)
    for pid in _marker_processes(bench.marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(bench.workdir, ignore_errors=True)
