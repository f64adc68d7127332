"""A private dockerd (BuildKit builder) on its own socket, data-root and exec-root.

The one home of this helper: the differential bed (``tests/differential/bed.py``) and the
benchmarks (``bench/``) both use it. Debian's docker.io 20.10: ``dockerd`` started with
``--iptables=false --bridge=none --exec-opt native.cgroupdriver=cgroupfs``, driven by its
own 20.10 client with ``DOCKER_BUILDKIT=1`` (a newer client wants buildx), stopped by
PID (SIGTERM, then SIGKILL). Nothing of the machine's own Docker is touched.

It dies with the process that started it (``dies_with_parent``: a killed pytest or bench
leaves no dockerd running). What a killed one leaves (its exec-root in the temporary
directory, named after the process that started it, and whatever is still mounted there
or in its data-root) is removed by the next ``start`` once that process is gone.

    d = Dockerd(workdir); d.start()      # RuntimeError with the log's tail if it fails
    d.docker("build", "-t", tag, ctx)   # CompletedProcess; check=True raises RuntimeError
    d.pid                                # the daemon's PID (for CPU/RSS of its process tree)
    d.stop()
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time

from dies_with_parent import dies_with_parent, stop_server
from kiln.snapshot.mount import unmount_all_under
from kiln.util.process_owner import is_alive, this_process

DOCKER = "/usr/bin/docker"  # the 20.10 client of Debian's docker.io (a newer one wants buildx)
DOCKERD = "/usr/sbin/dockerd"
COMMAND_TIMEOUT = 180
EXEC_ROOT_PREFIX = "kiln-dockerd-"
_EXEC_ROOT = re.compile(r"^kiln-dockerd-(\d+)\.(\d+)-")  # kiln-dockerd-<PID>.<START>-
DATA_ROOT_FILE = "kiln-data-root"  # in an exec-root: the data-root of its dockerd


class Dockerd:
    """A private dockerd (BuildKit builder) on its own socket, data-root and exec-root."""

    def __init__(self, work: str):
        self.work = work
        self.sock = os.path.join(work, "docker.sock")
        self.pidfile = os.path.join(work, "dockerd.pid")
        self.proc: subprocess.Popen | None = None
        self.exec_root = ""
        self.env = dict(
            os.environ,
            DOCKER_HOST=f"unix://{self.sock}",
            DOCKER_BUILDKIT="1",
            DOCKER_CONFIG=os.path.join(work, "client-config"),
        )

    @staticmethod
    def available() -> bool:
        return os.access(DOCKER, os.X_OK) and os.access(DOCKERD, os.X_OK)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float = 60) -> None:
        os.makedirs(self.env["DOCKER_CONFIG"], exist_ok=True)
        sweep_dead_dockerds()
        # exec-root holds the socket paths of dockerd's containerd: keep it short
        owner = this_process().replace(":", ".")
        self.exec_root = tempfile.mkdtemp(prefix=f"{EXEC_ROOT_PREFIX}{owner}-")
        data_root = os.path.join(self.work, "data")
        with open(os.path.join(self.exec_root, DATA_ROOT_FILE), "w") as f:
            f.write(data_root)
        # the socket too: a socket's path is at most 107 bytes, which a test's deep
        # temporary directory can pass (the daemon then never answers)
        self.sock = os.path.join(self.exec_root, "docker.sock")
        self.env["DOCKER_HOST"] = f"unix://{self.sock}"
        cmd = [
            DOCKERD,
            "--data-root", data_root,
            "--exec-root", self.exec_root,
            "--pidfile", self.pidfile,
            "-H", f"unix://{self.sock}",
            "--iptables=false", "--ip6tables=false", "--bridge=none",
            "--exec-opt", "native.cgroupdriver=cgroupfs",
        ]  # fmt: skip
        with open(os.path.join(self.work, "dockerd.log"), "wb") as log:
            self.proc = subprocess.Popen(dies_with_parent(cmd), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            res = self.docker("version", timeout=10, check=False)
            if res.returncode == 0:
                return
            time.sleep(0.3)
        self.stop()
        with open(os.path.join(self.work, "dockerd.log"), errors="replace") as f:
            raise RuntimeError("dockerd did not start:\n" + f.read()[-3000:])

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_server(self.proc)
        self.proc = None
        _remove_exec_root(self.exec_root)

    def argv(self, *args: str) -> list[str]:
        return [DOCKER, *args]

    def docker(self, *args, input=None, timeout=COMMAND_TIMEOUT, check=True):
        res = subprocess.run(
            self.argv(*args),
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            env=self.env,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {res.stderr.decode()}")
        return res

    def load(self, archives: dict[str, str]) -> None:
        for path in archives.values():
            self.docker("load", "-q", "-i", path)

    def build(self, context, flags=(), *, tag):
        return self.docker("build", "--network", "none", "--progress", "plain", "-t", tag,
                           *flags, str(context), check=False)  # fmt: skip

    def remove(self, tag: str) -> None:
        self.docker("rmi", "-f", tag, check=False)


def sweep_dead_dockerds(tmp: str | None = None) -> list[str]:
    """Remove the exec-roots that private dockerds of dead processes left in ``tmp`` (the
    temporary directory), unmounting what is still mounted in them and in their
    data-roots first (the data-root itself goes with the test's temporary directory);
    returns the exec-roots removed."""
    tmp = tmp or tempfile.gettempdir()
    removed = []
    for name in sorted(os.listdir(tmp)):
        match = _EXEC_ROOT.match(name)
        if match is None or is_alive(f"{match.group(1)}:{match.group(2)}"):
            continue
        _remove_exec_root(os.path.join(tmp, name))
        removed.append(os.path.join(tmp, name))
    return removed


def _remove_exec_root(exec_root: str) -> None:
    try:
        with open(os.path.join(exec_root, DATA_ROOT_FILE)) as f:
            data_root = f.read().strip()
    except OSError:
        data_root = ""
    for path in (exec_root, data_root):
        if path:
            with contextlib.suppress(Exception):  # the rest still goes
                unmount_all_under(path)
    shutil.rmtree(exec_root, ignore_errors=True)
