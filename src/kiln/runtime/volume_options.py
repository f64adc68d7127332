"""What ``--volume``'s ``O`` and ``U`` options do before a run, as buildah does.

``O``: the host directory under an overlay whose writes stay with the run. The container
sees the host directory and may write to it, but what it writes goes to an upper directory
of the run's own (in the run's bundle), removed when the run ends; the host directory is
never written. The runtime (or chroot isolation) mounts the overlay: kiln mounts nothing.

``U``: the host path and everything under it (links themselves, never followed) is chowned
to the user the command runs as, before the run. Paths whose owner a system depends on
(``/``, ``/etc``, ``/usr``, ``/home``, the user's home...) are refused, as buildah refuses
them, with the chown to run by hand if that is meant.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile

from kiln.errors import InvalidArgument

from .options import Mount, RunOptions
from .users import ResolvedUser


def prepare_volumes(
    opts: RunOptions, user: ResolvedUser, scratch: str
) -> tuple[RunOptions, list[str]]:
    """Chown the ``U`` volumes to ``user``; give each ``O`` one an upper and a work directory
    made under ``scratch``. Returns the options with those, and the directories the caller
    removes after the run."""
    chown_volumes(opts, user)
    return with_overlay_dirs(opts, scratch)


OVERLAY = "overlay"  # the Mount type parse_volume gives an ``O`` volume


def with_overlay_dirs(opts: RunOptions, scratch: str) -> tuple[RunOptions, list[str]]:
    """``opts`` with each overlay volume given an upper and a work directory made under
    ``scratch``; and the directories to remove after the run."""
    if not any(m.type == OVERLAY for m in opts.mounts):
        return opts, []
    made: list[str] = []
    mounts = []
    try:
        for m in opts.mounts:
            if m.type != OVERLAY:
                mounts.append(m)
                continue
            if any(c in m.source for c in ":,"):
                raise InvalidArgument(
                    f"--volume {m.source}:{m.destination}:O: an overlay's host path cannot "
                    "hold ':' or ','"
                )
            top = tempfile.mkdtemp(prefix="overlay-", dir=scratch)
            made.append(top)
            upper, work = os.path.join(top, "upper"), os.path.join(top, "work")
            os.mkdir(upper, 0o755)
            os.mkdir(work, 0o700)
            data = (f"lowerdir={m.source}", f"upperdir={upper}", f"workdir={work}")
            mounts.append(Mount(OVERLAY, m.source, m.destination, (*m.options, *data)))
    except BaseException:
        remove_overlay_dirs(made)
        raise
    return dataclasses.replace(opts, mounts=mounts), made


def remove_overlay_dirs(made: list[str]) -> None:
    for top in made:
        shutil.rmtree(top, ignore_errors=True)


# containers/common's DangerousHostPath list
_DANGEROUS = {
    "/", "/bin", "/boot", "/dev", "/etc", "/etc/passwd", "/etc/pki", "/etc/shadow", "/home",
    "/lib", "/lib64", "/media", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys",
    "/tmp", "/usr", "/var", "/var/lib", "/var/log",
}  # fmt: skip


def _dangerous(path: str) -> bool:
    homes = {os.path.expanduser("~")}
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        homes.add(os.path.expanduser(f"~{sudo_user}"))
    real = os.path.realpath(path)
    return real in _DANGEROUS or real in {os.path.realpath(h) for h in homes if h}


def chown_volumes(opts: RunOptions, user: ResolvedUser) -> None:
    """Chown the source of every mount with the ``U`` option to ``user``."""
    for mount in opts.mounts:
        if "U" not in mount.options:
            continue
        source = mount.source
        if _dangerous(source):
            raise InvalidArgument(
                f"--volume {source}:{mount.destination}:U: chowning {source} is not allowed; "
                f"run chown -R {user.uid}:{user.gid} {source} by hand if that is meant"
            )
        _chown_tree(source, user.uid, user.gid)


def _chown_tree(top: str, uid: int, gid: int) -> None:
    def chown(path: str) -> None:
        st = os.lstat(path)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.lchown(path, uid, gid)

    chown(top)
    if not os.path.isdir(top) or os.path.islink(top):
        return
    for root, dirs, files in os.walk(top, followlinks=False):
        for name in dirs + files:
            chown(os.path.join(root, name))
