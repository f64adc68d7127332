"""Directories a run copied up into the upper layer only to hold its mountpoints.

A mount on ``/etc/hosts`` or ``/srv/cache/x`` makes overlayfs copy ``/etc`` or ``/srv/cache``
up into the container's upper directory even when the run changes nothing there; left alone
they would land in the next layer. After the run (overlay unmounted) the ones still empty,
not opaque and identical in mode and owner to the lower directory are removed.

The upper and lower directories are walked component by component with ``O_NOFOLLOW``: a
path through a symlink (the run may have planted ``/srv -> /host/dir``) is not the
directory looked for, and is never followed out of the layer.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Iterator, Sequence

from kiln.archive.changes import is_opaque
from kiln.util.held_signals import opened

_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def placeholder_parents(destinations: Sequence[str]) -> list[str]:
    """Directories a run may copy up only to hold its mountpoints (/etc for hosts...),
    deepest first."""
    found = {"/etc"}
    for dest in destinations:
        parent = posixpath.dirname(posixpath.normpath("/" + dest.lstrip("/")))
        while parent not in ("/", ""):
            found.add(parent)
            parent = posixpath.dirname(parent)
    return sorted(found, key=lambda p: -p.count("/"))


@contextlib.contextmanager
def _parent_fd(base: str, path: str) -> Iterator[tuple[int, str] | None]:
    """(fd of the directory holding ``path`` under ``base``, final name), walked without
    following any symlink; None when a component is missing, a symlink or not a directory."""
    parts = [p for p in path.split("/") if p and p != "."]
    if not parts or ".." in parts:
        yield None
        return
    with contextlib.ExitStack() as held:  # each descriptor closed, a Ctrl-C's too
        try:
            fd = held.enter_context(opened(base, _DIR))
            for part in parts[:-1]:
                fd = held.enter_context(opened(part, _DIR, dir_fd=fd))
        except OSError:
            found = None
        else:
            found = (fd, parts[-1])
        yield found


def exists_in(base: str, path: str) -> bool:
    """Whether ``path`` exists under ``base`` (as anything), no symlink followed."""
    with _parent_fd(base, path) as found:
        if found is None:
            return False
        fd, name = found
        try:
            os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return False
        return True


def _dir_stat(base: str, path: str) -> os.stat_result | None:
    with _parent_fd(base, path) as found:
        if found is None:
            return None
        fd, name = found
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return None
        return st if stat.S_ISDIR(st.st_mode) else None


#: what a run's copy of a directory is compared with: (mode, uid, gid) of the directory
#: below it, None where there is none (or not a directory)
Below = tuple[int, int, int] | None


def below(rootfs: str, paths: Sequence[str]) -> dict[str, Below]:
    """Before a run, in its merged ``rootfs`` (paths the upper does not hold yet): what the
    run's copy-ups of ``paths`` will be compared with, one walk each, whatever the depth of
    the image (the merged view shows the first lower layer holding a path)."""
    found: dict[str, Below] = {}
    for path in paths:
        st = _dir_stat(rootfs, path)
        found[path] = None if st is None else (st.st_mode, st.st_uid, st.st_gid)
    return found


def _lower_below(lowers: Sequence[str], path: str) -> Below:
    for lower in lowers:
        with _parent_fd(lower, path) as found:
            if found is None:
                continue
            fd, name = found
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                return None  # something else is there below: the directory is a change
            return (st.st_mode, st.st_uid, st.st_gid)
    return None


def prune_unchanged(upper: str, before: dict[str, Below]) -> list[str]:
    """Remove the directories of ``before`` in ``upper`` that the run left empty, not opaque
    and identical in mode and owner to what was below them; returns what was removed."""
    removed = []
    for path, was in before.items():
        if was is None:
            continue
        with _parent_fd(upper, path) as found:
            if found is None:
                continue
            pfd, name = found
            with contextlib.ExitStack() as held:
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                try:
                    dfd = held.enter_context(opened(name, flags, dir_fd=pfd))
                except OSError:
                    continue
                st = os.fstat(dfd)
                if os.listdir(dfd) or is_opaque(f"/proc/self/fd/{dfd}"):
                    continue
            if (st.st_mode, st.st_uid, st.st_gid) == was:
                os.rmdir(name, dir_fd=pfd)
                removed.append(path)
    return removed


def prune_copied_up(upper: str, lowers: Sequence[str], paths: Sequence[str]) -> list[str]:
    """:func:`prune_unchanged` against the first of the ``lowers`` (top first) holding each
    of ``paths``, for a caller that has no merged view from before the run."""
    return prune_unchanged(upper, {p: _lower_below(lowers, p) for p in paths})
