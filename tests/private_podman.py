"""A private ``podman system service`` (Debian's podman 4.3) on its own socket and storage.

Everything it reads is made here: its storage (vfs: no mounts to leave behind), run and
temporary directories (its events log and image copies there too, not in /run/libpod and
/var/tmp), a containers.conf and a registries.conf with no search registries, so nothing
of the machine's own podman setup matters and no name is looked up on a network. It
dies with the process that started it (``dies_with_parent``) and is stopped by PID
(SIGTERM, then SIGKILL); the short directory of its socket and run state, named after
the process that started it, goes with ``stop`` or, after a killed run, with the next
``start``.

    p = PodmanService(workdir); p.start()   # RuntimeError with the log's tail if it fails
    request(p.sock, "GET", "/v4.3.1/libpod/_ping")
    p.stop()
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from dies_with_parent import dies_with_parent, stop_server
from kiln.util.process_owner import is_alive, this_process

PODMAN = shutil.which("podman") or "/usr/bin/podman"
SHORT_PREFIX = "kiln-podman-"
_SHORT = re.compile(r"^kiln-podman-(\d+)\.(\d+)-")  # kiln-podman-<PID>.<START>-


class PodmanService:
    """``podman system service --time=0`` over private storage, on ``self.sock``."""

    def __init__(self, work: str):
        self.work = work
        self.sock = self.short = ""
        self.registries_conf = os.path.join(work, "registries.conf")
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return os.access(PODMAN, os.X_OK)

    def _configure(self) -> tuple[list[str], dict[str, str]]:
        root, tmp = os.path.join(self.work, "root"), os.path.join(self.work, "tmp")
        run = os.path.join(self.short, "run")
        for d in (root, run, tmp):
            os.makedirs(d, exist_ok=True)
        files = {
            "storage.conf": f'[storage]\ndriver = "vfs"\nrunroot = "{run}"\ngraphroot = "{root}"\n',
            "registries.conf": "unqualified-search-registries = []\n",
            # its events log and image copies here too, not under /run/libpod and /var/tmp
            "containers.conf": f'[engine]\nevents_logfile_path = "{tmp}/events.log"\n'
            f'image_copy_tmp_dir = "{tmp}"\n',  # fmt: skip
        }
        for name, text in files.items():
            with open(os.path.join(self.work, name), "w") as f:
                f.write(text)
        env = dict(
            os.environ,
            CONTAINERS_STORAGE_CONF=os.path.join(self.work, "storage.conf"),
            CONTAINERS_REGISTRIES_CONF=self.registries_conf,
            CONTAINERS_CONF=os.path.join(self.work, "containers.conf"),
            XDG_CONFIG_HOME=os.path.join(self.work, "config"),
        )
        argv = [
            PODMAN,
            "--root", root, "--runroot", run, "--tmpdir", tmp,
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file", "--runtime", "runc",
            "system", "service", "--time=0", f"unix://{self.sock}",
        ]  # fmt: skip
        return argv, env

    def start(self, timeout: float = 60) -> None:
        # a socket's path is at most 107 bytes and podman's runroot 50, which a test's deep
        # temporary directory can pass: both go in a short one of their own
        sweep_dead_services()
        owner = this_process().replace(":", ".")
        self.short = tempfile.mkdtemp(prefix=f"{SHORT_PREFIX}{owner}-")
        self.sock = os.path.join(self.short, "podman.sock")
        argv, env = self._configure()
        with open(os.path.join(self.work, "podman.log"), "wb") as log:
            self.proc = subprocess.Popen(dies_with_parent(argv), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        with open(os.path.join(self.work, "podman.log"), errors="replace") as f:
            raise RuntimeError("podman system service did not start:\n" + f.read()[-3000:])

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(self.sock)
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_server(self.proc)
        self.proc = None
        shutil.rmtree(self.short, ignore_errors=True)


def sweep_dead_services(tmp: str | None = None) -> list[str]:
    """Remove the socket and run directories that services of dead processes (a killed
    pytest: its service died with it) left in ``tmp``; returns those removed."""
    tmp = tmp or tempfile.gettempdir()
    removed = []
    for name in sorted(os.listdir(tmp)):
        match = _SHORT.match(name)
        if match is None or is_alive(f"{match.group(1)}:{match.group(2)}"):
            continue
        shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
        removed.append(os.path.join(tmp, name))
    return removed
