"""Interrupt trials: run a kiln command, send it SIGINT or SIGTERM at a random moment, and
check that it kept kiln's promise.

Shared by ``tests/integration/test_interrupt_trials.py`` (a few seeded trials in CI) and
``bench/interrupt_fuzz.py`` (as many as asked). Unlike the SIGKILL trials
(``crash_trials``, whose setup and image checks these reuse), nothing may be left for the
next command to sweep: a signalled command cleans up on its way out. A trial:

1. ``prepare`` puts the store in the state the operation needs (not interrupted);
2. the operation starts as its own ``kiln`` process (its own session) and gets SIGINT or
   SIGTERM after a random delay in [0, its measured duration], to the kiln process alone
   (``kill``) or to its whole process group (Ctrl-C at a terminal, a CI runner's cancel);
3. it must end within ``STOPS_WITHIN`` seconds: exit 130 with ``Error: interrupted`` (SIGINT)
   or 143 with ``Error: stopped by SIGTERM`` as its last line, no traceback; or exit 0 when
   the signal came too late to stop it;
4. before any other kiln command runs (most sweep what dead ones left): nothing mounted
   under the store, runtime or temp dir, no RUN bundle, no runc container, no RUN process,
   no temp file, nothing in the snapshotter's ``tmp/`` (a staged layer), no lease, no
   working container but the user's own, no partial output file; then ``kiln system
   check`` and the store's fsck are clean and every tagged image reads back;
5. the same operation (prepared again) works.

The library trials (``library_trial``) do the same for a library call in a script: a
``KeyboardInterrupt`` lands in the main thread at a random moment, and once the call has
raised, the script itself finds nothing left and calls it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import crash_trials

STOPS_WITHIN = 15.0  # seconds from the signal to the exit (promised: a second or two)
GONE_WITHIN = 10.0  # seconds for a stopped RUN's processes to be reaped by the kernel

MULTI_STAGE = """FROM busybox AS one
RUN echo {marker} && head -c 2000000 /dev/urandom > /one && sleep 0.2
FROM busybox AS two
COPY more /more
RUN echo {marker} && head -c 2000000 /dev/urandom > /two
FROM busybox
COPY --from=one /one /one
COPY --from=two /two /more /
"""


def _noop(bench: Bench, n: int) -> None:
    pass


@dataclass
class Op:
    name: str
    argv: Callable[[Bench, int], list[str]]
    prepare: Callable[[Bench, int], None] = _noop
    touches: Callable[[Bench], set[str]] = lambda b: set()  # names it may change or remove
    repoints: bool = False  # stores the base image under another manifest (pull)
    output: Callable[[Bench, int], str] | None = None  # a file it writes: none if stopped
    creates: Callable[[Bench, int], str] | None = None  # a working container it makes
    # the signal goes to the container's process, whose status the command ends with
    # (``kiln run``, as podman's and buildah's): any status from it, no ``Error:`` line
    forwards: bool = False
    duration: float = 0.0  # measured by calibrate()


class Bench(crash_trials.Bench):
    """The SIGKILL trials' store, context and registry, with more to interrupt."""

    early = 0  # trials whose signal came before kiln's main ran (Python's start-up)
    # library trials: the Ctrl-C lands at a random point of the call's main thread where one
    # can (``ctrl_c_anywhere``), every point as likely as another, instead of after a delay
    at_lines = False

    def setup(self, rootfs_tar: str) -> None:
        super().setup(rootfs_tar)
        rnd = random.Random(self.seed + 2)
        many = os.path.join(self.ctx, "many")
        os.makedirs(many, exist_ok=True)
        for i in range(2000):
            with open(os.path.join(many, f"m{i}"), "w") as f:
                f.write(f"many {i}\n" * (i % 7))
        with open(os.path.join(self.ctx, "big"), "wb") as f:
            for _ in range(48):
                f.write(rnd.randbytes(1 << 20))
        files = {
            "from": "FROM busybox\nARG N\nENV N=$N\n",
            "run": f"FROM busybox\nRUN echo {self.marker} && sleep 0.5 && "
            "head -c 3000000 /dev/urandom > /r\n",
            "many": "FROM busybox\nCOPY many /many\n",
            "big": "FROM busybox\nCOPY big /big\n",
            "multi": MULTI_STAGE.format(marker=self.marker),
        }
        for kind, text in files.items():
            with open(os.path.join(self.workdir, f"Containerfile.{kind}"), "w") as f:
                f.write(text)
        self.kiln("build", "-t", "fuzz/big", "-f", self.containerfile("big"), self.ctx)
        self.import_tar = os.path.join(self.workdir, "import.tar")
        subprocess.run(["tar", "-cf", self.import_tar, "-C", self.ctx, "big", "many"],
                       check=True, timeout=120)  # fmt: skip
        self.kiln("from", "--name", "fuzz-keep", "fuzz/big")
        os.makedirs(os.path.join(self.workdir, "out"), exist_ok=True)

    def containerfile(self, kind: str) -> str:
        return os.path.join(self.workdir, f"Containerfile.{kind}")

    def start_piped(self, args: list[str]) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)  # fmt: skip

    def calibrate(self, ops: list[Op]) -> None:  # type: ignore[override]
        crash_trials.Bench.calibrate(self, ops)  # type: ignore[arg-type]
        for n, op in enumerate(ops):
            self.done_with(op, -1 - n)

    def done_with(self, op: Op, n: int) -> None:
        """What a finished (or stopped) operation made that the next trial must not meet."""
        if op.output is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(op.output(self, n))
        if op.creates is not None:
            self.kiln("rm", op.creates(self, n), check=False)

    # ---- one trial ----

    def trial(self, op: Op, n: int) -> list[str]:  # type: ignore[override]
        """Interrupt ``op`` once at a random moment; the problems found (empty: all well)."""
        op.prepare(self, n)
        before = crash_trials.tagged_images(self.root)
        touched = op.touches(self)
        containers = set(_container_names(self.root))
        sig = self.rng.choice([signal.SIGINT, signal.SIGTERM])
        group = self.rng.random() < 0.5
        delay = self.rng.uniform(0, op.duration)
        proc = self.start_piped(op.argv(self, n))
        time.sleep(delay)
        sent = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
        stderr = err.decode(errors="replace")
        where = (
            f"{op.name} #{n} {signal.Signals(sig).name}{' (group)' if group else ''} "
            f"at {delay:.2f}s/{op.duration:.2f}s: exit {proc.returncode} after {took:.2f}s"
        )
        if before_kiln_ran(proc.returncode, stderr, sig):
            where += " (before kiln's main)"
            self.early += 1
            problems = []
        else:
            problems = exit_problems(proc.returncode, stderr, sig, took, op.forwards)
        self.log.append(where)
        if op.output is not None:
            problems += output_problems(op.output(self, n))
        if proc.returncode == 0 and op.creates is not None:
            containers.add(op.creates(self, n))
        problems += self.left_behind(containers)
        problems += self.store_checks(before, touched, op.repoints)
        self.done_with(op, n)
        op.prepare(self, n)
        again = self.kiln(*op.argv(self, n), check=False)
        if again.returncode != 0:
            problems.append(f"the same command failed next: {again.stderr.strip()}")
        self.done_with(op, n)
        return [f"{where}: {p}" for p in problems]

    def left_behind(self, containers: set[str]) -> list[str]:
        """What the stopped command left, looked at before any kiln command sweeps it."""
        problems = crash_trials.runtime_left(self, GONE_WITHIN)
        snap_tmp = os.path.join(self.root, "snapshots", "tmp")
        if os.path.isdir(snap_tmp) and os.listdir(snap_tmp):
            problems.append(f"snapshot tmp/ left: {os.listdir(snap_tmp)}")
        ingest = os.path.join(self.root, "ingest")
        if os.path.isdir(ingest) and os.listdir(ingest):
            problems.append(f"ingests left: {os.listdir(ingest)}")
        leases = _leases(self.root)
        if leases:
            problems.append(f"leases left: {leases}")
        extra = set(_container_names(self.root)) - containers
        if extra:
            problems.append(f"working containers left: {sorted(extra)}")
        return problems

    def run_library(self, op: LibraryOp, n: int, delay: float, line: int = 0) -> dict:
        spec = {"prepare": op.prepare, "call": op.call, "output": op.output, "n": abs(n),
                "delay": delay, "marker": self.marker, "line": line,
                "tests": os.path.dirname(os.path.abspath(__file__))}  # fmt: skip
        env = dict(self.env, KILN_RUNC_ADVISORY="ignore")
        done = subprocess.run([sys.executable, "-c", LIBRARY_SCRIPT, self.root, self.runtime_dir,
                               self.tmpdir, json.dumps(spec)], env=env, capture_output=True,
                              text=True, timeout=300, check=False)  # fmt: skip
        if done.returncode != 0:
            return {"failed": f"the script failed ({done.returncode}): {done.stderr[-3000:]}"}
        return json.loads(done.stdout.splitlines()[-1])

    def calibrate_library(self, ops: list[LibraryOp]) -> None:
        """Each call once, not interrupted: it must work, and its time bounds the delays."""
        for n, op in enumerate(ops):
            ran = self.run_library(op, -1 - n, -1.0)
            assert "failed" not in ran and ran["again"] == "ok", (op.name, ran)
            op.duration = ran["took"]
            if self.at_lines:
                op.lines = self.run_library(op, -1 - n, -1.0, -1)["lines"]

    def library_trial(self, op: LibraryOp, n: int) -> list[str]:
        """Ctrl-C in a script's call of ``op`` at a random moment; the problems found."""
        before = crash_trials.tagged_images(self.root)
        touched = op.touches(self)
        if self.at_lines:  # at the N-th line the call runs (traced), not after a delay
            line = self.rng.randint(1, max(1, op.lines))
            ran = self.run_library(op, n, -1.0, line)
            where = f"library {op.name} #{n} at line {line}/{op.lines}"
        else:
            delay = self.rng.uniform(0, op.duration)
            ran = self.run_library(op, n, delay)
            where = f"library {op.name} #{n} at {delay:.2f}s/{op.duration:.2f}s"
        if "failed" in ran:
            self.log.append(where)
            return [f"{where}: {ran['failed']}"]
        where += f": {'interrupted' if ran['interrupted'] else 'done'} after {ran['took']:.2f}s"
        self.log.append(where)
        problems = [f"left once it raised: {ran['left']}"] if ran["left"] else []
        if op.output:
            seen = op.output + ".seen"
            os.rename(seen, op.output)
            if os.path.getsize(op.output) == 0:
                os.unlink(op.output)
            problems += output_problems(op.output)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(op.output)
        if ran["again"] != "ok":
            problems.append(f"the same call failed next: {ran['again']}")
        problems += self.left_behind(set(_container_names(self.root)))
        problems += self.store_checks(before, touched, op.repoints)
        return [f"{where}: {p}" for p in problems]

    def store_checks(
        self, before: dict[str, tuple[str, str]], touched: set[str], repoints: bool
    ) -> list[str]:
        check = self.kiln("system", "check", check=False)
        problems = []
        if check.returncode != 0:
            problems.append(f"system check: {check.stdout.strip()} {check.stderr.strip()}")
        problems += [p for p in crash_trials.store_problems(self) if p.startswith("fsck")]
        moved = self.base_id if repoints else ""
        problems += crash_trials.image_problems(self.root, before, touched, moved)
        return problems


def before_kiln_ran(code: int, stderr: str, sig: int) -> bool:
    """The signal came while Python started or imported ``kiln.cli.main``, before its
    ``main`` set kiln's handlers: Python's own ending (killed by SIGTERM; a KeyboardInterrupt
    traceback through start-up frames only), which nothing of kiln's can have left work."""
    if code == -sig:
        return "kiln/cli/main.py" not in stderr or not _IN_MAIN.search(stderr)
    return code in (1, -sig) and "KeyboardInterrupt" in stderr and not _IN_MAIN.search(stderr)


_IN_MAIN = re.compile(r'kiln/cli/main\.py", line \d+, in (?!<module>)')


def exit_problems(
    code: int, stderr: str, sig: int, took: float, forwards: bool = False
) -> list[str]:
    """How the command ended, against the promise: 0, or 128 + the signal with its line."""
    problems = []
    if "Traceback" in stderr:
        problems.append(f"a traceback: {stderr.strip()[-2000:]}")
    if forwards:
        return problems + ([f"took {took:.1f}s to stop"] if took > STOPS_WITHIN else [])
    lines = stderr.strip().splitlines()
    last = lines[-1] if lines else ""
    expected = "Error: interrupted" if sig == signal.SIGINT else "Error: stopped by SIGTERM"
    if code not in (0, 128 + sig):
        problems.append(f"exit {code}, not 0 or {128 + sig}: {stderr.strip()[-600:]!r}")
    elif code == 128 + sig and last != expected:
        problems.append(f"last line {last!r}, not {expected!r}")
    if took > STOPS_WITHIN:
        problems.append(f"took {took:.1f}s to stop")
    return problems


def output_problems(path: str) -> list[str]:
    """An output file is whole (a late signal) or absent, with no temp file beside it."""
    others = [n for n in os.listdir(os.path.dirname(path)) if n != os.path.basename(path)]
    problems = [f"temp files beside the output: {others}"] if others else []
    if os.path.exists(path):
        try:
            with tarfile.open(path) as tar:
                if not tar.getmembers():
                    problems.append(f"an empty output: {path}")
        except (tarfile.TarError, EOFError) as e:
            problems.append(f"a partial output: {path}: {e}")
    return problems


def _container_names(root: str) -> list[str]:
    from kiln.store import Store

    with Store.open(root) as store:
        return [c.name for c in store.list_containers()]


def _leases(root: str) -> list[str]:
    from kiln.store import Store

    with Store.open(root) as store:
        return [lease.id for lease in store.leases.list_leases()]


# ---- the operations ---------------------------------------------------------------------


def _build(kind: str, *flags: str) -> Callable[[Bench, int], list[str]]:
    def argv(bench: Bench, n: int) -> list[str]:
        return ["build", "--runtime", "runc", "--no-cache", *flags, "--build-arg", f"N={n}",
                "-t", f"fuzz/built-{kind}", "-f", bench.containerfile(kind), bench.ctx]  # fmt: skip

    return argv


def _named(part: str) -> Callable[[Bench], set[str]]:
    return lambda b: {k for k in crash_trials.tagged(b.root) if part in k}


def _rmi_quietly(bench: Bench, *names: str) -> None:
    bench.kiln("rmi", "-f", *names, check=False)


def _out(name: str) -> Callable[[Bench, int], str]:
    return lambda b, n: os.path.join(b.workdir, "out", f"{name}-{abs(n)}.tar")


def _prepare_commit(bench: Bench, n: int) -> None:
    name = f"fuzz-commit-{abs(n)}"
    bench.kiln("rm", name, check=False)
    bench.kiln("from", "--name", name, "busybox")
    bench.kiln("run", "--runtime", "runc", name, "--", "sh", "-c",
               "head -c 3000000 /dev/urandom > /big && mkdir -p /d && cp -r /bin /d/")  # fmt: skip


def _prepare_prune(bench: Bench, n: int) -> None:
    crash_trials._prepare_prune(bench, n)


def operations(bench: Bench) -> list[Op]:
    with open(os.path.join(bench.workdir, "Containerfile.prune"), "w") as f:
        f.write("FROM busybox\nARG N\nRUN echo $N > /n && head -c 1500000 /dev/urandom > /r\n")
    pulled = f"{bench.registry}/crash/base:1"
    run_sh = f"echo {bench.marker}; head -c 4000000 /dev/urandom > /x; sleep 0.3"
    return [
        Op("build-from", _build("from"), touches=_named("fuzz/built-from")),
        Op("build-run", _build("run"), touches=_named("fuzz/built-run")),
        Op("build-many", _build("many"), touches=_named("fuzz/built-many")),
        Op("build-big", _build("big"), touches=_named("fuzz/built-big")),
        Op("build-multi", _build("multi"), touches=_named("fuzz/built-multi")),
        Op("build-jobs2", _build("multi", "--jobs", "2"), touches=_named("fuzz/built-multi")),
        Op(
            "pull",
            lambda b, n: ["pull", "--tls-verify=false", f"docker://{pulled}"],
            lambda b, n: _rmi_quietly(b, pulled),
            lambda b: {pulled},
            repoints=True,
        ),  # fmt: skip
        Op(
            "push",
            lambda b, n: [
                "push",
                "--tls-verify=false",
                "fuzz/big",
                b.ref(f"fuzz/pushed{abs(n)}:1"),
            ],
        ),  # fmt: skip
        Op(
            "save",
            lambda b, n: ["save", "-o", _out("saved")(b, n), "fuzz/big"],
            output=_out("saved"),
        ),  # fmt: skip
        Op(
            "load",
            lambda b, n: ["load", "-i", b.archive],
            lambda b, n: _rmi_quietly(b, "crash/loaded"),
            _named("crash/loaded"),
        ),  # fmt: skip
        Op(
            "import",
            lambda b, n: ["import", b.import_tar, "fuzz/imported"],
            touches=_named("fuzz/imported"),
        ),  # fmt: skip
        Op(
            "export",
            lambda b, n: ["export", "-o", _out("exported")(b, n), "fuzz-keep"],
            output=_out("exported"),
        ),  # fmt: skip
        Op(
            "from",
            lambda b, n: ["from", "--name", f"fuzz-from-{abs(n)}", "fuzz/big"],
            creates=lambda b, n: f"fuzz-from-{abs(n)}",
        ),  # fmt: skip
        Op(
            "run",
            lambda b, n: ["run", "--runtime", "runc", "fuzz-keep", "--", "sh", "-c", run_sh],
            forwards=True,
        ),  # fmt: skip
        Op("copy", lambda b, n: ["copy", "fuzz-keep", os.path.join(b.ctx, "big"), "/copied"]),
        Op(
            "commit",
            lambda b, n: ["commit", "--rm", f"fuzz-commit-{abs(n)}", "fuzz/committed"],
            _prepare_commit,
            _named("fuzz/committed"),
        ),  # fmt: skip
        Op("system-prune", lambda b, n: ["system", "prune", "-f"], _prepare_prune),
        Op(
            "rmi",
            lambda b, n: ["rmi", "crash/victim"],
            crash_trials._prepare_rmi,
            _named("crash/victim"),
        ),  # fmt: skip
    ]


def cleanup(bench: Bench) -> None:
    crash_trials.cleanup(bench)


# ---- library calls ----------------------------------------------------------------------

# the script: ``prepare``, then ``call`` with a Ctrl-C landing in the main thread after
# ``delay`` seconds (none if negative, or once the call has returned); then what is left,
# as the script sees it once the call has raised, and the call (prepared again) once more
LIBRARY_SCRIPT = r"""
import json, os, signal, subprocess, sys, threading, time
import kiln

root, rt, tmp, spec = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
http = kiln.RegistryOptions(tls_verify=False)
n, out = spec["n"], spec["output"]
main = threading.main_thread().ident
lock = threading.Lock()
done = False

def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:  # gone
        return b""

def _marked():
    return [p for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())
            and spec["marker"].encode() in _cmdline(p)]

def ctrl_c_after(delay):
    time.sleep(delay)
    with lock:
        if not done:
            signal.pthread_kill(main, signal.SIGINT)

with kiln.open_context(root) as ctx:
    exec(spec["prepare"])
    containers = {c.name for c in kiln.list_containers(ctx, all=True)}
    # at the N-th point of kiln's code where a Ctrl-C can land (``ctrl_c_anywhere``), a real
    # SIGINT; -1 counts the points only
    sys.path.insert(0, spec["tests"])
    from ctrl_c_anywhere import ctrl_c_at_point
    lines = 0
    t0 = time.monotonic()
    try:
        if spec["delay"] >= 0:  # started inside: a Ctrl-C at once lands in Thread.start
            threading.Thread(target=ctrl_c_after, args=(spec["delay"],), daemon=True).start()
        if spec["line"]:
            interrupted, lines = ctrl_c_at_point(spec["line"], lambda: exec(spec["call"], globals()))
        else:
            exec(spec["call"])
            interrupted = False
        with lock:
            done = True
    except KeyboardInterrupt:
        interrupted = True
    took = time.monotonic() - t0
    snap_tmp = os.path.join(root, "snapshots", "tmp")
    def _removing():  # a removal's deletion, on the snapshotter's thread: going on its own
        return os.path.isdir(snap_tmp) and any(n.startswith("rm-") for n in os.listdir(snap_tmp))
    deadline = time.monotonic() + 10
    while (_marked() or _removing()) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {
        "mounts": [line.split()[4] for line in open("/proc/self/mountinfo")
                   if line.split()[4].startswith((root, rt, tmp))],
        "running": subprocess.run(["runc", "--root", os.path.join(rt, "runc"), "list", "-q"],
                                  capture_output=True, text=True).stdout.split(),
        "processes": _marked(),
        "containers": sorted({c.name for c in kiln.list_containers(ctx, all=True)} - containers),
        "leases": [lease.id for lease in ctx.store.leases.list_leases()],
        "scratch": [os.path.join(d, n) for d, dirs, files in os.walk(tmp) for n in dirs + files
                    if not os.path.join(d, n).startswith(ctx._scratch or "\0")],
        "staged": os.listdir(snap_tmp) if os.path.isdir(snap_tmp) else [],
    }
    left = {k: v for k, v in left.items() if v}
    if spec["output"]:
        with open(spec["output"] + ".seen", "wb") as f:  # what the call left, for the test
            if os.path.exists(spec["output"]):
                f.write(open(spec["output"], "rb").read())
                os.unlink(spec["output"])
    again = "ok"
    try:
        exec(spec["prepare"])
        exec(spec["call"])
    except Exception as e:
        again = f"{type(e).__name__}: {e}"
print(json.dumps({"interrupted": interrupted, "took": took, "left": left, "again": again,
                  "lines": lines}))
"""


@dataclass
class LibraryOp:
    name: str
    call: str  # Python statements with ``ctx``, ``kiln``, ``http`` and ``n``
    prepare: str = ""
    output: str = ""  # a file the call writes: none once it has raised
    touches: Callable[[Bench], set[str]] = lambda b: set()
    repoints: bool = False
    duration: float = 0.0
    lines: int = 0  # lines of Python the call runs in the main thread (``at_lines``)


def _lib_build(bench: Bench, kind: str, jobs: int | None = None) -> str:
    return (f"kiln.build(ctx, kiln.BuildOptions(dockerfile_text=open({bench.containerfile(kind)!r})"
            f".read(), context={bench.ctx!r}, no_cache=True, tags=['fuzz/lib-{kind}'], "
            f"build_args={{'N': str(n)}}, jobs={jobs!r}))")  # fmt: skip


def library_operations(bench: Bench) -> list[LibraryOp]:
    pulled = f"{bench.registry}/crash/base:1"
    big = os.path.join(bench.ctx, "big")
    rm_pulled = f"kiln.remove_images(ctx, [{pulled!r}], force=True, ignore=True)"
    commit_prep = (
        "try:\n    kiln.remove_containers(ctx, ['fuzz-lib-commit'])\n"
        "except kiln.NotFound:\n    pass\n"
        "kiln.create_container(ctx, 'busybox', name='fuzz-lib-commit')\n"
        "kiln.run_in_container(ctx, 'fuzz-lib-commit', ['sh', '-c', "
        "'head -c 3000000 /dev/urandom > /big && cp -r /bin /d'])"
    )
    return [
        LibraryOp("build-run", _lib_build(bench, "run"), touches=_named("fuzz/lib-run")),
        LibraryOp("build-many", _lib_build(bench, "many"), touches=_named("fuzz/lib-many")),
        LibraryOp("build-big", _lib_build(bench, "big"), touches=_named("fuzz/lib-big")),
        LibraryOp("build-jobs2", _lib_build(bench, "multi", 2), touches=_named("fuzz/lib-multi")),
        LibraryOp(
            "pull",
            f"kiln.pull_image(ctx, kiln.PullRequest.of({pulled!r}, options=http))",
            rm_pulled,
            touches=lambda b: {pulled},
            repoints=True,
        ),  # fmt: skip
        LibraryOp(
            "push",
            f"kiln.push_image(ctx, 'fuzz/big', "
            f"'docker://{bench.registry}/fuzz/libpushed' + str(n) + ':1', options=http)",
        ),
        LibraryOp(
            "save",
            "kiln.save_images(ctx, ['fuzz/big'], out)",
            output=os.path.join(bench.workdir, "out", "lib-saved.tar"),
        ),  # fmt: skip
        LibraryOp(
            "load",
            f"kiln.load_images(ctx, {bench.archive!r})",
            "kiln.remove_images(ctx, ['crash/loaded'], ignore=True)",
            touches=_named("crash/loaded"),
        ),  # fmt: skip
        LibraryOp(
            "import",
            f"kiln.import_image(ctx, {bench.import_tar!r}, 'fuzz/lib-imported')",
            touches=_named("fuzz/lib-imported"),
        ),  # fmt: skip
        LibraryOp("copy", f"kiln.copy_to_container(ctx, 'fuzz-keep', [{big!r}], '/libcopied')"),
        LibraryOp(
            "commit",
            "kiln.commit_container(ctx, 'fuzz-lib-commit', 'fuzz/lib-committed', rm=True)",
            commit_prep,
            touches=_named("fuzz/lib-committed"),
        ),  # fmt: skip
    ]
