"""A private dockerd (BuildKit builder) on its own socket, data-root and exec-root.

The one home of this helper: the differential bed (``tests/differential/bed.py``) and the
benchmarks (``bench/``) both use it. Debian's docker.io 20.10: ``dockerd`` started with
``--iptables=false --bridge=none --exec-opt native.cgroupdriver=cgroupfs``, driven by its
own 20.10 client with ``DOCKER_BUILDKIT=1`` (a newer client wants buildx), stopped by
PID (SIGTERM, then SIGKILL). Nothing of the machine's own Docker is touched.

    d = Dockerd(workdir); d.start()      # RuntimeError with the log's tail if it fails
    d.docker("build", "-t", tag, ctx)   # CompletedProcess; check=True raises RuntimeError
    d.pid                                # the daemon's PID (for CPU/RSS of its process tree)
    d.stop()
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

DOCKER = "/usr/bin/docker"  # the 20.10 client of Debian's docker.io (a newer one wants buildx)
DOCKERD = "/usr/sbin/dockerd"
COMMAND_TIMEOUT = 180


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
        # exec-root holds the socket paths of dockerd's containerd: keep it short
        self.exec_root = tempfile.mkdtemp(prefix="kiln-dockerd-")
        cmd = [
            DOCKERD,
            "--data-root", os.path.join(self.work, "data"),
            "--exec-root", self.exec_root,
            "--pidfile", self.pidfile,
            "-H", f"unix://{self.sock}",
            "--iptables=false", "--ip6tables=false", "--bridge=none",
            "--exec-opt", "native.cgroupdriver=cgroupfs",
        ]  # fmt: skip
        with open(os.path.join(self.work, "dockerd.log"), "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
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
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        shutil.rmtree(self.exec_root, ignore_errors=True)

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
