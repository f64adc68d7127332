"""Scratch directories that name the process they belong to.

A kiln command keeps its temporary files (remote and named build contexts, RUN scripts,
downloads, mounted image views) in one directory of the scratch space (``$TMPDIR``,
``--tmpdir``): ``kiln-scratch-<PID>.<START>-<random>``, owner as in
:mod:`kiln.util.process_owner`. It is removed when the command ends; if the command is
killed, the next kiln command that sweeps leftovers finds it by name and removes it once
its owner is dead. Directories of other users are never touched. Work with no context
(a mounted view) goes in the process's own one (``process_scratch_dir``).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import sys

from kiln.util.lazy_pattern import lazy_pattern
from kiln.util.process_owner import is_alive, this_process

__all__ = [
    "PREFIX",
    "dead_scratch_dirs",
    "make_scratch_dir",
    "process_scratch_dir",
    "scratch_owner",
    "system_tmpdir",
]

PREFIX = "kiln-scratch-"
_NAME_TRIES = 100  # random names taken before giving up (as tempfile, which tries 10,000)
_NAME = lazy_pattern(r"^kiln-scratch-(\d+)\.(\d+)-[A-Za-z0-9_]+$")


def make_scratch_dir(base: str) -> str:
    """A new directory (mode 0700) under ``base`` named after this process."""
    os.makedirs(base, exist_ok=True)
    owner = this_process().replace(":", ".")
    # not tempfile.mkdtemp: importing tempfile (and with it shutil, random, bz2, lzma) was
    # most of what a fully cached build imported for nothing else
    for _ in range(_NAME_TRIES):
        path = os.path.join(base, f"{PREFIX}{owner}-{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, "no unused scratch directory name", base)


def system_tmpdir() -> str:
    """The system's temporary directory, the one ``tempfile.gettempdir`` gives: its
    ``tempfile.tempdir`` when set, else the first writable directory of ``$TMPDIR``,
    ``$TEMP``, ``$TMP``, /tmp, /var/tmp, /usr/tmp and the working directory. Found
    without the file ``tempfile`` creates and removes in it to tell (every command paid
    that, and the import of ``tempfile``, for a name)."""
    chosen = getattr(sys.modules.get("tempfile"), "tempdir", None)  # set, or found before
    if chosen is not None:
        return os.fsdecode(chosen)
    names = [os.environ.get(var) for var in ("TMPDIR", "TEMP", "TMP")]
    candidates = [name for name in names if name]
    candidates += ["/tmp", "/var/tmp", "/usr/tmp"]
    try:
        candidates.append(os.getcwd())
    except OSError:
        candidates.append(os.curdir)
    effective = os.access in os.supports_effective_ids
    for candidate in candidates:
        path = candidate if candidate == os.curdir else os.path.abspath(candidate)
        if os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK, effective_ids=effective):
            return path
    raise FileNotFoundError(errno.ENOENT, f"No usable temporary directory found in {candidates}")


_process_dir: dict[int, str] = {}


def process_scratch_dir() -> str:
    """This process's own scratch directory in the system's temporary directory, for work
    that has no context's (``mounted`` views without a ``parent_dir``); made on first use,
    removed at exit if empty (what is in it is removed by whoever made it)."""
    pid = os.getpid()
    path = _process_dir.get(pid)
    if path is None or not os.path.isdir(path):
        path = _process_dir[pid] = make_scratch_dir(system_tmpdir())
        atexit.register(_remove_if_empty, path, pid)
    return path


def _remove_if_empty(path: str, pid: int) -> None:
    if os.getpid() == pid:
        with contextlib.suppress(OSError):
            os.rmdir(path)


def scratch_owner(name: str) -> str | None:
    """The owner (``PID:START``) a scratch directory's name gives, else None."""
    match = _NAME().match(name)
    return f"{match.group(1)}:{match.group(2)}" if match else None


def dead_scratch_dirs(base: str) -> list[str]:
    """This user's scratch directories under ``base`` whose owner process is gone."""
    try:
        names = os.listdir(base)
    except OSError:
        return []
    uid = os.geteuid()
    found = []
    for name in sorted(names):
        owner = scratch_owner(name) if name.startswith(PREFIX) else None
        if owner is None or is_alive(owner):
            continue
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid == uid and os.path.isdir(path) and not os.path.islink(path):
            found.append(path)
    return found
