"""Many kiln processes on one store at once, some SIGKILLed: a seeded, bounded stress.

Shared by ``bench/store_stress.py`` (a soak: any seed, any duration) and
``tests/integration/test_store_stress.py`` (a short one with a fixed seed). For
``duration`` seconds, ``workers`` threads each run one ``kiln`` process after another on one
``--root`` (a random mix: builds on a shared base with cache hits and misses, RUN, COPY and
two stages; tag, untag and rmi, of images others build on too; image and system prune;
push to and pull from a local registry; save and load; import and export; working
containers from, run, copy, commit, rm; a Python program with three threads on one
``kiln`` context), and, among them, docker-py calls to a ``kiln serve`` on the same store
(without docker-py installed, none). A killer SIGKILLs a random one of these processes (alone, or with
its process group, as a CI timeout does) now and then; the server is started again.

What is asked of them: a command ends within its deadline, and one that fails says why
in a clear line (``clear_error``): never a traceback, "unexpected ...", "database is
locked" or bare OS error text. Afterwards (``Stress.verify``): every image listed
validates and its unpacked layers match their diff IDs, ``kiln inspect`` and ``kiln
history`` work on it, ``kiln system check`` and the store's fsck are clean; after the
user removes their working containers a collection with no grace period leaves no blob,
unpacked layer, snapshot, lease, ingest, lock file, scratch dir, mount, RUN bundle, runc
container or cgroup that nothing refers to.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field

from mount_points import mount_points_under

#: the shapes of an unclear failure (what the user cannot act on, or a crash)
UNCLEAR = re.compile(
    r"Traceback|unexpected [A-Za-z]+Error|unexpected [A-Za-z]+:|database is locked"
    r"|\[Errno \d+\]|OSError|sqlite3\.|IntegrityError|KeyError|AttributeError|TypeError"
    # the store's insides, for what another kiln removed meanwhile (a push's blobs under an
    # rmi and a prune said "blob sha256:... not found in the store")
    r"|not found in the store|has lost blob|snapshot \S+ does not exist"
)
#: the library op: three threads on one context; a KilnError is a refusal (one line)
LIBRARY_SCRIPT = """
import sys, threading, kiln
root, n = sys.argv[1], sys.argv[2]
def work(ctx, i):
    try:
        if i == 0:
            kiln.build(ctx, kiln.BuildOptions(
                dockerfile_text=f"FROM stress/base\\nRUN echo lib{n} > /lib\\n",
                tags=[f"stress/lib{n}"]))
        elif i == 1:
            kiln.tag_image(ctx, "stress/base", f"stress/t{int(n) % 2}")
            kiln.list_images(ctx)
        else:
            kiln.remove_images(ctx, [f"stress/lib{(int(n) + 1) % 4}"])
    except kiln.KilnError as e:
        print(f"Error: {e}", file=sys.stderr)
        failed.append(e)
failed = []
with kiln.open_context(root) as ctx:
    threads = [threading.Thread(target=work, args=(ctx, i)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
sys.exit(1 if failed else 0)
"""
#: a command that takes longer than this hangs
DEADLINE = 180.0
BUSYBOX = "busybox"
BASE = "stress/base"


def clear_error(stderr: str) -> bool:
    """Whether a failed command's error output is a clear refusal, not a crash."""
    return UNCLEAR.search(stderr) is None


@dataclass
class Outcome:
    op: str
    argv: list[str]
    code: int
    stderr: str
    killed: bool
    seconds: float


@dataclass
class Stress:
    workdir: str
    registry: str  # "127.0.0.1:PORT", plain http
    seed: int = 0
    workers: int = 7
    kill_every: tuple[float, float] = (1.0, 4.0)  # seconds between kills, uniform
    debug: bool = False  # run every kiln with --debug
    log: list[str] = field(default_factory=list)
    ops: collections.Counter[str] = field(default_factory=collections.Counter)
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    kills: collections.Counter[str] = field(default_factory=collections.Counter)
    problems: list[str] = field(default_factory=list)
    refusals: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self.root = os.path.join(self.workdir, "root")
        self.runtime_dir = os.path.join(self.workdir, "run")
        self.tmpdir = os.path.join(self.workdir, "tmp")
        self.ctx = os.path.join(self.workdir, "ctx")
        self.files = os.path.join(self.workdir, "files")
        self.sock = os.path.join(self.workdir, "kiln.sock")
        for d in (self.tmpdir, self.ctx, self.files):
            os.makedirs(d, exist_ok=True)
        self.env = dict(
            os.environ, KILN_ROOT=self.root, KILN_RUNTIME_DIR=self.runtime_dir,
            KILN_TMPDIR=self.tmpdir, TMPDIR=self.tmpdir, KILN_RUNC_ADVISORY="ignore",
        )  # fmt: skip
        self._lock = threading.Lock()
        self._running: dict[int, tuple[str, subprocess.Popen]] = {}  # worker -> (op, proc)
        self._killed: set[int] = set()  # pids the killer killed
        self._stop = threading.Event()
        self.run_ids: set[str] = set()  # RUN containers seen in the runtime dir
        self.server: subprocess.Popen | None = None

    # ---- kiln processes ----

    def argv(self, *args: str) -> list[str]:
        # --debug: an unexpected error comes with its traceback, which the report shows
        return [sys.executable, "-m", "kiln.cli.main", *(["--debug"] if self.debug else []),
                *args]  # fmt: skip

    def kiln(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                              timeout=DEADLINE, stdin=subprocess.DEVNULL)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"kiln {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def _run(self, worker: int, op: str, args: list[str], python: bool = False) -> Outcome:
        """One kiln process of a worker (``python``: a Python program, ``args`` its
        arguments), which the killer may kill."""
        t0 = time.monotonic()
        argv = [sys.executable, *args] if python else self.argv(*args)
        proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        with self._lock:
            self._running[worker] = (op, proc)
        try:
            _out, err = proc.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _out, err = proc.communicate(timeout=60)
            self.problem(f"{op} hung for {DEADLINE:.0f} s: kiln {' '.join(args)}")
        finally:
            with self._lock:
                self._running.pop(worker, None)
                killed = proc.pid in self._killed
        out = Outcome(op, args, proc.returncode, err or "", killed, time.monotonic() - t0)
        self.judge(out)
        return out

    def judge(self, out: Outcome) -> None:
        with self._lock:
            self.ops[out.op] += 1
        if out.killed:
            return
        if out.code == 0:
            if not clear_error(out.stderr):  # a thread's traceback, a warning's OS error
                self.problem(f"{out.op}: {' '.join(out.argv)} succeeded: {out.stderr!r}")
            return
        with self._lock:
            self.failed[out.op] += 1
        line = out.stderr.strip()
        if not clear_error(line) or not line:
            self.problem(f"{out.op}: kiln {' '.join(out.argv)} exit {out.code}: {line!r}")
        else:
            last = line.splitlines()[-1]
            with self._lock:
                self.refusals[f"{out.op}: " + re.sub(r"[0-9a-f]{12,64}", "<id>", last)[:160]] += 1

    def problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)

    # ---- the world ----

    def setup(self, rootfs_tar: str) -> None:
        """busybox, the shared base (also in the registry), a context, a saved archive."""
        self.rootfs_tar = rootfs_tar
        rnd = random.Random(self.seed)
        data = os.path.join(self.ctx, "data")
        os.makedirs(data, exist_ok=True)
        for i in range(3):
            with open(os.path.join(data, f"f{i}"), "wb") as f:
                f.write(rnd.randbytes(200_000))
        self.kiln("import", rootfs_tar, BUSYBOX)
        self._containerfile("base", "FROM busybox\nRUN mkdir -p /base && echo base > /base/x\n")
        self.kiln("build", "--runtime", "runc", "-f", self._cf("base"), "-t", BASE, self.ctx)
        self.kiln("push", "--tls-verify=false", BASE, f"docker://{self.registry}/stress/p0")
        self.kiln("save", "-o", os.path.join(self.files, "saved0.tar"), BASE)
        self._containerfile("arg", "FROM stress/base\nARG N\nRUN echo $N > /n\n")
        self._containerfile(
            "copy", "FROM stress/base\nCOPY data /data\nRUN cat /data/* | wc -c > /size\n"
        )
        self._containerfile(
            "stages",
            "FROM busybox AS one\nARG N\nRUN echo $N > /x\n"
            "FROM stress/base\nCOPY --from=one /x /x\nCOPY data/f0 /f0\n",
        )
        self._containerfile(
            "cachemount",
            "FROM stress/base\nARG N\nRUN --mount=type=cache,target=/cache,id=stress "
            "echo $N >> /cache/seen && cat /cache/seen | wc -l > /n\n",
        )

    def _cf(self, name: str) -> str:
        return os.path.join(self.workdir, f"Containerfile.{name}")

    def _containerfile(self, name: str, text: str) -> None:
        with open(self._cf(name), "w") as f:
            f.write(text)

    # ---- the operations: (worker, rng) -> runs one or more kiln commands ----

    def _name(self, rng: random.Random) -> str:
        return rng.choice([BASE, BUSYBOX, "stress/b0", "stress/b1", "stress/b2", "stress/t0",
                           "stress/t1", "stress/loaded", "stress/imp", "stress/c0"])  # fmt: skip

    def _victim(self, rng: random.Random) -> str:
        """A name to remove: now and then the base others build on, mostly not (so that
        the builds on it have something to do)."""
        return self._name(rng) if rng.random() < 0.15 else rng.choice(
            ["stress/b0", "stress/b1", "stress/b2", "stress/t0", "stress/t1", "stress/loaded",
             "stress/imp", "stress/c0", "stress/lib0", "stress/lib1"])  # fmt: skip

    def op_build(self, w: int, rng: random.Random) -> None:
        kind = rng.choice(["arg", "arg", "copy", "stages", "base"])
        args = ["build", "--runtime", "runc", "-f", self._cf(kind)]
        if kind == "base":
            args += ["-t", BASE]
        else:
            args += ["--build-arg", f"N={rng.randrange(4)}", "-t", f"stress/b{rng.randrange(3)}"]
        if rng.random() < 0.15:
            args.append("--no-cache")
        self._run(w, "build", [*args, self.ctx])

    def op_tag(self, w: int, rng: random.Random) -> None:
        self._run(w, "tag", ["tag", self._name(rng), f"stress/t{rng.randrange(2)}"])

    def op_untag(self, w: int, rng: random.Random) -> None:
        self._run(w, "untag", ["untag", self._victim(rng)])

    def op_rmi(self, w: int, rng: random.Random) -> None:
        force = ["-f"] if rng.random() < 0.3 else []
        self._run(w, "rmi", ["rmi", *force, self._victim(rng)])

    def op_prune(self, w: int, rng: random.Random) -> None:
        args = rng.choice([["image", "prune", "-f"], ["system", "prune", "-f"],
                           ["builder", "prune", "-f"], ["system", "prune", "-a", "-f"]])  # fmt: skip
        if args[-2] == "-a" and rng.random() < 0.7:
            args = ["image", "prune", "-f"]  # everything unused goes: rarely
        self._run(w, "prune", args)

    def op_push(self, w: int, rng: random.Random) -> None:
        dest = f"docker://{self.registry}/stress/p{rng.randrange(3)}"
        self._run(w, "push", ["push", "--tls-verify=false", self._name(rng), dest])

    def op_pull(self, w: int, rng: random.Random) -> None:
        src = f"docker://{self.registry}/stress/p{rng.randrange(3)}"
        self._run(w, "pull", ["pull", "--tls-verify=false", src])

    def op_save(self, w: int, rng: random.Random) -> None:
        path = os.path.join(self.files, f"saved{w}.tar")
        fmt = rng.choice(["docker-archive", "oci-archive"])
        self._run(w, "save", ["save", "--format", fmt, "-o", path, self._name(rng)])

    def op_load(self, w: int, rng: random.Random) -> None:
        saved = [f for f in os.listdir(self.files) if f.startswith("saved")]
        path = os.path.join(self.files, rng.choice(sorted(saved)))
        self._run(w, "load", ["load", "-i", path])

    def op_import(self, w: int, rng: random.Random) -> None:
        exported = [f for f in os.listdir(self.files) if f.startswith("export")]
        src = self.rootfs_tar
        if exported and rng.random() < 0.5:
            src = os.path.join(self.files, rng.choice(sorted(exported)))
        name = BUSYBOX if rng.random() < 0.5 else "stress/imp"
        self._run(w, "import", ["import", src, name])

    def op_container(self, w: int, rng: random.Random) -> None:
        """from, then run, copy, commit, export in some order, then rm (or left)."""
        name = f"stress-w{w}-{rng.randrange(1000)}"
        if self._run(w, "from", ["from", "--name", name, self._name(rng)]).code != 0:
            return
        steps = ["run", "copy", "commit", "export"]
        rng.shuffle(steps)
        for step in steps[: rng.randrange(1, 5)]:
            if step == "run":
                args = ["run", "--runtime", "runc", name, "--", "sh", "-c", "echo $$ > /pid"]
            elif step == "copy":
                args = ["copy", name, os.path.join(self.ctx, "data", "f1"), "/f1"]
            elif step == "commit":
                args = ["commit", name, f"stress/c{rng.randrange(2)}"]
            else:
                args = ["export", "-o", os.path.join(self.files, f"export{w}.tar"), name]
            self._run(w, step, args)
        if rng.random() < 0.8:
            self._run(w, "rm", ["rm", name])

    def op_api(self, w: int, rng: random.Random) -> None:
        """docker-py calls to ``kiln serve``: list, inspect, history, tag, remove."""
        try:
            import docker  # type: ignore[import-untyped]
        except ImportError:  # without docker-py, the server is only killed and restarted
            return
        if self.server is None or self.server.poll() is not None:
            return
        name = self._name(rng)
        with self._lock:
            self.ops["api"] += 1
        try:
            client = docker.DockerClient(base_url=f"unix://{self.sock}", version="1.41",
                                         timeout=60)  # fmt: skip
            try:
                client.images.list()
                image = client.images.get(name)
                image.history()
                if rng.random() < 0.5:
                    image.tag("stress/t1", "latest")
                else:
                    client.images.remove("stress/t1")
            finally:
                client.close()
        except docker.errors.NotFound:
            pass
        except Exception as e:
            self._api_failure(f"api: {name}", "api", e)

    def _api_failure(self, what: str, kind: str, e: Exception) -> None:
        """A docker-py call that failed: a problem unless the server refused clearly (a
        refusal of ``kind``) or was killed under the call (then it is not its answer)."""
        import docker  # type: ignore[import-untyped]

        if isinstance(e, docker.errors.APIError):
            text = str(e.explanation or e)
            if e.status_code >= 500 or not clear_error(text):
                self.problem(f"{what}: {e}")
            else:
                with self._lock:
                    self.refusals[f"{kind}: {text[:160]}"] += 1
        elif (
            self.server is not None
            and self.server.poll() is None
            and not isinstance(e, (ConnectionError, OSError))
            and "Connection" not in type(e).__name__ + str(e)
        ):
            self.problem(f"{what}: {type(e).__name__}: {e}")

    def op_library(self, w: int, rng: random.Random) -> None:
        """A Python program on the store with three threads at once: builds, tags, lists,
        removals through ``kiln``'s library (one context for all of them)."""
        self._run(w, "library", ["-c", LIBRARY_SCRIPT, self.root, str(rng.randrange(4))],
                  python=True)  # fmt: skip

    def op_cachemount(self, w: int, rng: random.Random) -> None:
        """A build whose RUN shares a cache mount with the others; now and then a prune of
        the build cache (with --all: the unused cache-mount directories) runs at once."""
        args = [
            "build",
            "--runtime",
            "runc",
            "-f",
            self._cf("cachemount"),
            "--build-arg",
            f"N={rng.randrange(6)}",
            "-t",
            f"stress/m{rng.randrange(2)}",
        ]
        if rng.random() < 0.3:
            args.append("--no-cache")
        prune = None
        if rng.random() < 0.5:
            prune = rng.choice([["builder", "prune", "-a", "-f"], ["system", "prune", "-f"],
                                ["builder", "prune", "-f"]])  # fmt: skip
        self._together(w, ("cachemount", [*args, self.ctx]), ("prune", prune))

    def op_cacheio(self, w: int, rng: random.Random) -> None:
        """A build exporting its cache to, or importing it from, a local directory or the
        registry."""
        where = rng.choice(["local", "registry"])
        if where == "local":
            d = os.path.join(self.files, f"cache{rng.randrange(2)}")
            to, frm = f"type=local,dest={d}", f"type=local,src={d}"
        else:
            ref = f"{self.registry}/stress/cache{rng.randrange(2)}"
            to, frm = f"type=registry,ref={ref},mode=max", f"type=registry,ref={ref}"
        args = [
            "build",
            "--runtime",
            "runc",
            "--tls-verify=false",
            "-f",
            self._cf("arg"),
            "--build-arg",
            f"N={rng.randrange(6)}",
            "-t",
            f"stress/b{rng.randrange(3)}",
        ]
        if rng.random() < 0.5:
            args += ["--cache-to", to]
        if rng.random() < 0.6 or "--cache-to" not in args:
            args += ["--cache-from", frm]
        if rng.random() < 0.3:
            args.append("--no-cache")
        self._run(w, "cacheio", [*args, self.ctx])

    def op_manifest(self, w: int, rng: random.Random) -> None:
        """A manifest list made, added to, pushed and (sometimes) removed."""
        lst = f"stress/list{rng.randrange(2)}"
        create = self._run(w, "manifest", ["manifest", "create", "--amend", lst])
        if create.code != 0:
            return
        self._run(w, "manifest", ["manifest", "add", lst, self._name(rng)])
        if rng.random() < 0.6:
            dest = f"docker://{self.registry}/stress/list{rng.randrange(2)}"
            self._run(w, "manifest", ["manifest", "push", "--tls-verify=false", "--all",
                                      lst, dest])  # fmt: skip
        if rng.random() < 0.3:
            self._run(w, "manifest", ["manifest", "rm", lst])

    def op_race(self, w: int, rng: random.Random) -> None:
        """Every worker tags (or removes) one name: ``stress/race``."""
        if rng.random() < 0.75:
            self._run(w, "race", ["tag", self._name(rng), "stress/race"])
        else:
            self._run(w, "race", rng.choice([["untag", "stress/race"], ["rmi", "stress/race"]]))

    def op_pullprune(self, w: int, rng: random.Random) -> None:
        """``system prune --all`` while a pull is under way."""
        src = f"docker://{self.registry}/stress/p{rng.randrange(3)}"
        self._together(w, ("pull", ["pull", "--tls-verify=false", src]),
                       ("prune", ["system", "prune", "-a", "-f"]))  # fmt: skip

    def _together(self, w: int, *runs: tuple[str, list[str] | None]) -> None:
        """Commands of one worker at once (each killable, as a worker of its own)."""
        threads = [threading.Thread(target=self._run, args=(w + 1000 * i, op, args))
                   for i, (op, args) in enumerate(runs) if args is not None]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE + 120)

    def op_apibuild(self, w: int, rng: random.Random) -> None:
        """docker-py ``images.build`` to ``kiln serve``, or a client that sends a build and
        hangs up once its output has started."""
        try:
            import docker  # type: ignore[import-untyped]
        except ImportError:
            return
        if self.server is None or self.server.poll() is not None:
            return
        n = rng.randrange(4)
        dockerfile = f"FROM stress/base\nRUN echo api{n} > /api && sleep 0.2\n"
        with self._lock:
            self.ops["apibuild"] += 1
        if rng.random() < 0.4:
            self._hangup_build(dockerfile, n)
            return
        try:
            client = docker.DockerClient(base_url=f"unix://{self.sock}", version="1.41",
                                         timeout=120)  # fmt: skip
            try:
                client.images.build(fileobj=io.BytesIO(dockerfile.encode()),
                                    tag=f"stress/api{n % 2}", rm=True)  # fmt: skip
            finally:
                client.close()
        except docker.errors.BuildError as e:
            text = str(e.msg)
            if not clear_error(text):
                self.problem(f"apibuild: {text}")
            else:
                with self._lock:
                    self.refusals[f"apibuild: {text[:160]}"] += 1
        except Exception as e:
            self._api_failure("apibuild", "apibuild", e)

    def _hangup_build(self, dockerfile: str, n: int) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile.encode())
            tar.addfile(info, io.BytesIO(dockerfile.encode()))
        body = buf.getvalue()
        head = (f"POST /v1.41/build?t=stress/api{n % 2}&rm=1 HTTP/1.1\r\nHost: d\r\n"
                f"Content-Type: application/x-tar\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.settimeout(60)
            s.connect(self.sock)
            s.sendall(head.encode() + body)
            s.recv(1)  # the build has started answering: hang up

    def weighted_ops(self) -> list[tuple[str, float]]:
        return [("build", 5), ("tag", 2), ("untag", 1), ("rmi", 2), ("prune", 1), ("push", 1.5),
                ("pull", 1.5), ("save", 1), ("load", 1), ("import", 1), ("container", 2),
                ("api", 2), ("library", 1),
                ("cachemount", 1.5), ("cacheio", 1), ("manifest", 1), ("race", 1.5),
                ("pullprune", 0.5), ("apibuild", 1.5)]  # fmt: skip

    # ---- running it ----

    def start_server(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sock)
        self.server = subprocess.Popen(
            self.argv("serve", "-H", f"unix://{self.sock}"), env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.workdir, "server.err"), "ab"),  # noqa: SIM115
            start_new_session=True,
        )  # fmt: skip

    def _worker(self, w: int, until: float) -> None:
        rng = random.Random(f"{self.seed}-{w}")
        names, weights = zip(*self.weighted_ops(), strict=True)
        while time.monotonic() < until and not self._stop.is_set():
            op = rng.choices(names, weights)[0]
            try:
                getattr(self, f"op_{op}")(w, rng)
            except Exception as e:  # the harness's own failure: report it, go on
                self.problem(f"worker {w} {op}: {type(e).__name__}: {e}")

    def _killer(self, until: float) -> None:
        rng = random.Random(f"{self.seed}-killer")
        while not self._stop.wait(rng.uniform(*self.kill_every)) and time.monotonic() < until:
            with self._lock:
                running = sorted(self._running.items())
            if self.server is not None and rng.random() < 0.1:
                running.append((-1, ("serve", self.server)))
            if not running:
                continue
            _w, (op, proc) = rng.choice(running)
            group = rng.random() < 0.5
            with self._lock:
                self._killed.add(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.send_signal(signal.SIGKILL)
            with self._lock:
                self.kills[op] += 1
            if op == "serve":
                proc.wait(timeout=60)
                self.start_server()

    def _watch_runs(self) -> None:
        """Note every RUN container's id, to look for its cgroup afterwards."""
        bundles = os.path.join(self.runtime_dir, "bundles")
        while not self._stop.wait(0.2):
            with contextlib.suppress(OSError):
                self.run_ids.update(n[: len("kiln-") + 32] for n in os.listdir(bundles))

    def run(self, duration: float) -> float:
        """The stress itself; returns its wall time."""
        t0 = time.monotonic()
        until = t0 + duration
        self.start_server()
        threads = [threading.Thread(target=self._worker, args=(w, until)) for w in
                   range(self.workers)]  # fmt: skip
        helpers = [threading.Thread(target=self._killer, args=(until,)),
                   threading.Thread(target=self._watch_runs)]  # fmt: skip
        for t in threads + helpers:
            t.start()
        for t in threads:
            t.join(until - time.monotonic() + DEADLINE * 6)
        self._stop.set()
        for t in helpers:
            t.join(120)
        if any(t.is_alive() for t in threads):
            self.problem("a worker did not finish")
        self.stop_server()
        return time.monotonic() - t0

    def stop_server(self) -> None:
        if self.server is None:
            return
        self.server.send_signal(signal.SIGTERM)
        try:
            code = self.server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            code = self.server.wait(timeout=60)
            self.problem("kiln serve did not stop on SIGTERM within 60 s")
        if code not in (0, -signal.SIGTERM):
            self.problem(f"kiln serve exited {code} on SIGTERM")
        self.server = None

    # ---- afterwards ----

    def verify(self) -> list[str]:
        """What the store must be after the stress (see the module); the problems."""
        problems = list(self.problems)
        listed = self.kiln("images", "-q", "--no-trunc", check=False)
        if listed.returncode != 0:
            return [*problems, f"kiln images failed: {listed.stderr.strip()}"]
        check = self.kiln("system", "check", check=False)
        if check.returncode != 0:
            problems.append(f"system check: {check.stdout.strip()} {check.stderr.strip()}")
        problems += self._images_read_back(sorted(set(listed.stdout.split())))
        self.kiln("rm", "--all")  # the user's working containers, left by the stress
        problems += self._nothing_unreferenced()
        return problems

    def _images_read_back(self, ids: list[str]) -> list[str]:
        from kiln.errors import KilnError
        from kiln.image import validate_image
        from kiln.snapshot import Snapshotter
        from kiln.store import Store
        from snapshot_layers import layer_mismatches

        problems = []
        store = Store.open(self.root)
        try:
            lists = {rec.id for rec in store.list_indexes()}
        finally:
            store.close()
        for image_id in ids:
            # a manifest list (``kiln images`` lists them too) reads back as a list; its
            # history is its image's, which may have been removed (a clear refusal)
            verbs = [["manifest", "inspect"], ["inspect"]] if image_id in lists else [
                ["inspect"], ["history"]]  # fmt: skip
            for verb in verbs:
                done = self.kiln(*verb, image_id, check=False)
                if done.returncode != 0:
                    problems.append(f"kiln {' '.join(verb)} {image_id}: {done.stderr.strip()}")
                elif verb == ["inspect"] and not isinstance(json.loads(done.stdout), list):
                    problems.append(f"kiln inspect {image_id}: not a JSON list: {done.stdout!r}")
        store = Store.open(self.root)
        try:
            for rec in store.list_images():
                try:
                    validate_image(store, rec.manifest_digest)
                except KilnError as e:
                    problems.append(f"image {rec.id} ({rec.names}) does not read back: {e}")
            problems += [f"fsck: {p}" for p in store.fsck()]
            snaps = Snapshotter(os.path.join(self.root, "snapshots"))
            try:
                problems += [f"unpacked layer: {m}" for m in layer_mismatches(store, snaps)]
            finally:
                snaps.close()
        finally:
            store.close()
        return problems

    def _nothing_unreferenced(self) -> list[str]:
        """A collection with no grace period, then: only what images refer to is left."""
        from kiln.ops.context import open_context

        problems = []
        with open_context(self.root) as ctx:
            ctx.store.blob_grace_seconds = 0
            ctx.snapshots.grace_seconds = 0
            ctx.collect_garbage()
            with ctx.store.db.snapshot() as conn:
                wanted = {r[0] for r in conn.execute(
                    "SELECT manifest_digest FROM images UNION SELECT config_digest FROM images "
                    "UNION SELECT COALESCE(il.blob_digest, l.blob_digest) FROM image_layers il "
                    "LEFT JOIN layers l ON l.chain_id = il.chain_id "
                    "UNION SELECT digest FROM indexes UNION SELECT digest FROM index_blobs")}  # fmt: skip
                chains = {r[0] for r in conn.execute("SELECT chain_id FROM image_layers")}
                leases = conn.execute("SELECT id FROM leases").fetchall()
                containers = conn.execute("SELECT COUNT(*) FROM containers").fetchone()[0]
            blobs = {str(d) for d in ctx.store.iter_blobs()}
            if blobs - wanted:
                problems.append(f"unreferenced blobs left: {sorted(blobs - wanted)}")
            if leases:
                problems.append(f"leases left: {leases}")
            if containers:
                problems.append(f"{containers} working containers left after rm --all")
            snap_layers = {
                r["chain_id"] for r in ctx.snapshots.db.query("SELECT chain_id FROM layers")
            }
            active = ctx.snapshots.db.query("SELECT key FROM active")
            if snap_layers - chains:
                problems.append(f"unpacked layers no image uses: {sorted(snap_layers - chains)}")
            if active:
                problems.append(f"active snapshots left: {[r['key'] for r in active]}")
        snaps = os.path.join(self.root, "snapshots")
        for sub in ("tmp", "locks", "active"):
            left = _listdir(os.path.join(snaps, sub))
            if left:
                problems.append(f"snapshots/{sub} left: {left}")
        for where in (os.path.join(self.root, "ingest"), self.tmpdir,
                      os.path.join(self.runtime_dir, "bundles")):  # fmt: skip
            if _listdir(where):
                problems.append(
                    f"left in {os.path.relpath(where, self.workdir)}: {_listdir(where)}"
                )
        mounts = mount_points_under(self.root, self.runtime_dir, self.tmpdir)
        if mounts:
            problems.append(f"mounts left: {mounts}")
        state = os.path.join(self.runtime_dir, "runc")
        if _listdir(state):
            problems.append(f"runc state left: {_listdir(state)}")
        cgroups = [
            os.path.join(c, own, run_id)
            for c in _listdir("/sys/fs/cgroup", full=True)
            for own in _own_cgroup_paths()
            for run_id in self.run_ids
            if os.path.isdir(os.path.join(c, own, run_id))
        ]
        if cgroups:
            problems.append(f"cgroups of RUN containers left: {cgroups}")
        return problems

    def summary(self, seconds: float) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items()))
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failed.items()))
        kills = ", ".join(f"{k} {v}" for k, v in sorted(self.kills.items()))
        return (f"seed {self.seed}, {self.workers} workers, {seconds:.0f} s: "
                f"{sum(self.ops.values())} commands ({ops}); refused {failed or 'none'}; "
                f"{sum(self.kills.values())} kills ({kills})")  # fmt: skip

    def cleanup(self) -> None:
        """Stop what is left running (after a failure too)."""
        self._stop.set()
        with self._lock:
            running = list(self._running.values())
        for _op, proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self.server is not None and self.server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(timeout=60)
        for point in sorted(mount_points_under(self.workdir), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False, timeout=30)


def _listdir(path: str, full: bool = False) -> list[str]:
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return []
    return [os.path.join(path, n) for n in names] if full else names


def _own_cgroup_paths() -> set[str]:
    """This process's cgroup in each hierarchy, relative (runc puts a RUN's below it)."""
    with open("/proc/self/cgroup") as f:
        return {line.rstrip("\n").split(":", 2)[2].lstrip("/") for line in f}
