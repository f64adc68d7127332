"""The per-run state every isolation shares: state dir, run id, bundle dir, prepared rootfs."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from kiln.errors import NotFound
from kiln.util.process_owner import this_process
from kiln.util.rootless import is_rootless, runtime_base

from . import mountpoints
from .etc_files import write_etc_files
from .options import RunOptions
from .users import ResolvedUser, resolve_user

DEFAULT_RUNTIME_DIR = "/run/kiln/runtime"
OWNER_FILE = "owner"  # in a bundle: the kiln process running it (kiln.util.process_owner)


def default_runtime_dir() -> str:
    """``$KILN_RUNTIME_DIR`` or /run/kiln/runtime (for a rootless user under
    ``$XDG_RUNTIME_DIR`` or the temporary directory); not created."""
    if os.environ.get("KILN_RUNTIME_DIR"):
        return os.environ["KILN_RUNTIME_DIR"]
    if not is_rootless():
        return DEFAULT_RUNTIME_DIR
    return os.path.join(runtime_base(), "kiln", "runtime")


def runtime_dir() -> str:
    """:func:`default_runtime_dir`, created mode 0700."""
    path = default_runtime_dir()
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


@dataclass
class Prepared:
    run_id: str
    state_dir: str
    bundle: str
    opts: RunOptions  # with the hostname filled in
    user: ResolvedUser
    etc_files: dict[str, str]


@contextlib.contextmanager
def prepared(opts: RunOptions, rootfs: str) -> Iterator[Prepared]:
    """Resolve the user, create mountpoints and the bundle dir; undo all of it afterwards."""
    opts.validate()
    rootfs = os.path.abspath(rootfs)
    if not os.path.isdir(rootfs):
        raise NotFound(f"root filesystem {rootfs} does not exist: mount the container first")
    run_id = "kiln-" + secrets.token_hex(16)
    if not opts.hostname:
        opts = dataclasses.replace(opts, hostname=run_id[5:17])
    user = resolve_user(rootfs, opts.user)
    state = runtime_dir()
    bundles = os.path.join(state, "bundles")
    os.makedirs(bundles, mode=0o700, exist_ok=True)
    bundle = tempfile.mkdtemp(prefix=run_id + "-", dir=bundles)
    placeholders = None
    try:
        # who runs it: if kiln is killed, the next kiln command stops what it left running
        with open(os.path.join(bundle, OWNER_FILE), "w") as f:
            f.write(this_process())
        placeholders = mountpoints.prepare(opts, rootfs)
        etc = write_etc_files(bundle, opts, opts.hostname)
        yield Prepared(run_id, state, bundle, opts, user, etc)
    finally:
        if placeholders is not None:
            placeholders.cleanup()
        shutil.rmtree(bundle, ignore_errors=True)
