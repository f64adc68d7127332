"""``--volume HOST:CTR:U``: the host directory given to the run's user first, as buildah does.

Before the run, the host path and everything under it (links themselves, never followed)
is chowned to the user the command runs as (its uid and gid as the host sees them). Paths
whose owner a system depends on (``/``, ``/etc``, ``/usr``, ``/home``, the user's home...)
are refused, as buildah refuses them, with the chown to run by hand if that is meant.
"""

from __future__ import annotations

import os

from kiln.errors import InvalidArgument

from .options import RunOptions
from .users import ResolvedUser

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
