"""The per-run state every isolation shares: state dir, run id, bundle dir, prepared rootfs.

A bundle directory (with its run id) is made once per process and reused by the process's
next runs: a RUN step then rewrites ``config.json`` and the etc files that changed instead
of making and deleting a directory of six files (each a journalled metadata change of the
file system under the runtime dir: about 15 per step, milliseconds each on a busy disk).
Runs at the same time (parallel stages) take a bundle each. The process's bundles go when
it exits; a killed process's are swept by the next kiln (their owner file names it).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import field

from kiln.errors import NotFound
from kiln.util.held_signals import signals_held
from kiln.util.lazy_dataclass import dataclass
from kiln.util.process_owner import this_process

from . import mountpoints
from .etc_files import Written, write_etc_files
from .options import RunOptions
from .rundir import OWNER_FILE, bundle_prefix, default_runtime_dir
from .users import ResolvedUser, resolve_user


def runtime_dir() -> str:
    """:func:`default_runtime_dir`, created mode 0700."""
    path = default_runtime_dir()
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


@dataclass
class Prepared:
    """A container's OCI bundle, written and ready for runc."""

    run_id: str
    state_dir: str
    bundle: str
    opts: RunOptions  # with the hostname filled in (but with --uts host or PATH)
    user: ResolvedUser
    etc_files: dict[str, str]


@dataclass
class _Bundle:
    """One bundle directory, kept for reuse by the next container."""

    state: str  # the runtime dir it is in
    run_id: str
    path: str
    written: dict[str, Written] = field(default_factory=dict)  # etc file name -> its write


class _Bundles:
    """This process's idle bundles (a fork starts with none: the owner file names a process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Bundle] = []
        self.pid = os.getpid()
        self.cleanup_registered = False

    def take(self, state: str) -> _Bundle:
        with self.lock:
            if self.pid != os.getpid():
                self.idle, self.pid = [], os.getpid()
            for i, bundle in enumerate(self.idle):
                if bundle.state == state:
                    del self.idle[i]
                    if os.path.isdir(bundle.path):  # else removed under us: make another
                        return bundle
                    break
        run_id = "kiln-" + os.urandom(16).hex()
        bundles = os.path.join(state, "bundles")
        os.makedirs(bundles, mode=0o700, exist_ok=True)
        # who runs it, in its name: if kiln is killed, the next command stops what it left
        owner = this_process()
        bundle = _Bundle(
            state, run_id, tempfile.mkdtemp(prefix=bundle_prefix(run_id, owner), dir=bundles)
        )
        try:
            with open(os.path.join(bundle.path, OWNER_FILE), "w") as f:  # for older kilns
                f.write(owner)
        except BaseException:
            shutil.rmtree(bundle.path, ignore_errors=True)
            raise
        with self.lock:
            if not self.cleanup_registered:
                atexit.register(self.remove_all)
                self.cleanup_registered = True
        return bundle

    def give_back(self, bundle: _Bundle, reusable: bool) -> None:
        with self.lock:
            if reusable and self.pid == os.getpid():
                self.idle.append(bundle)
                return
        shutil.rmtree(bundle.path, ignore_errors=True)

    def remove_all(self) -> None:
        with self.lock:
            if self.pid != os.getpid():
                return
            idle, self.idle = self.idle, []
        for bundle in idle:
            shutil.rmtree(bundle.path, ignore_errors=True)


_bundles = _Bundles()
_made_runtime_dir: list[str] = []


def _runtime_dir_once() -> str:
    """:func:`runtime_dir`, made and checked once per process (and again if it went)."""
    path = default_runtime_dir()
    if path not in _made_runtime_dir or not os.path.isdir(path):
        runtime_dir()
        _made_runtime_dir.append(path)
    return path


@contextlib.contextmanager
def prepared(opts: RunOptions, rootfs: str) -> Iterator[Prepared]:
    """Resolve the user, create mountpoints and fill a bundle dir; undo all of it afterwards
    (the bundle itself waits for this process's next run)."""
    opts.validate()
    rootfs = os.path.abspath(rootfs)
    if not os.path.isdir(rootfs):
        raise NotFound(f"root filesystem {rootfs} does not exist: mount the container first")
    state = _runtime_dir_once()
    bundle = placeholders = None
    overlay_dirs: list[str] = []
    try:
        # a Ctrl-C as the bundle was made, or before this ``try``, left it behind: without
        # its owner file or a config.json, no sweep ever knew whose it was
        with signals_held():
            bundle = _bundles.take(state)
        hostname = opts.hostname
        if opts.shares_namespace("uts"):  # the host's or another's: its name is not the run's
            # to set; the host's name in /etc/hostname, or none for another's (not known here;
            # buildah's is empty too)
            hostname = os.uname().nodename if opts.uts == "host" else ""
        elif not hostname:
            hostname = bundle.run_id[5:17]
            opts = dataclasses.replace(opts, hostname=hostname)
        user = resolve_user(rootfs, opts.user)
        if any(m.type == "overlay" or "U" in m.options for m in opts.mounts):
            # start-up: only --volume's O and U options need it
            from .volume_options import prepare_volumes

            opts, overlay_dirs = prepare_volumes(opts, user, bundle.path)
        placeholders = mountpoints.prepare(opts, rootfs)
        etc = write_etc_files(bundle.path, opts, hostname, bundle.written)
        yield Prepared(bundle.run_id, state, bundle.path, opts, user, etc)
    finally:
        if placeholders is not None:
            placeholders.cleanup()
        for top in overlay_dirs:  # the O volumes' upper and work directories
            shutil.rmtree(top, ignore_errors=True)
        # failed or not, the run is over; but a container the runtime could not delete
        # keeps its id: the bundle goes with it
        if bundle is not None:
            kept = os.path.lexists(os.path.join(state, "runc", bundle.run_id))
            _bundles.give_back(bundle, not kept)
