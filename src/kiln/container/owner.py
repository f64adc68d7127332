"""``--chown user[:group]`` for COPY/ADD, resolved in the container's own /etc/passwd and /etc/group.

As BuildKit: a user *name* takes its primary group from passwd unless a group is given; a
numeric UID alone means the same numeric GID; ``:GROUP`` is user 0 with that group and ``USER:`` is ``USER``; names
that do not exist are an error.
"""

from __future__ import annotations

from kiln.archive.safe_root import SafeRoot
from kiln.errors import InvalidArgument
from kiln.runtime.users import read_etc_file

_MAX_ID = 2**32 - 2


def _numeric(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        if value > _MAX_ID:
            raise InvalidArgument(f"ID {text} is out of range")
        return value
    return None


def _lookup(text: str | None, name: str, field: int) -> list[str] | None:
    for line in (text or "").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) > field and parts[0] == name:
            return parts
    return None


def resolve_chown(root: SafeRoot, spec: str) -> tuple[int, int]:
    """``--chown`` value -> (uid, gid); unknown names raise InvalidArgument naming the file."""
    user, sep, group = spec.partition(":")
    if not (user or group) or ":" in group:
        raise InvalidArgument(f"--chown {spec!r} is invalid: use USER[:GROUP] (names or IDs)")
    if not group:  # "USER:" is USER, as buildah and BuildKit take it
        sep = ""
    uid = _numeric(user or "0")  # ":GROUP" is root's, as buildah and BuildKit take it
    gid: int | None = None
    if uid is None:
        entry = _lookup(read_etc_file(root, "/etc/passwd"), user, 3)
        if entry is None:
            raise InvalidArgument(
                f"--chown {spec!r}: unknown user {user!r} in the container's /etc/passwd: "
                "use a user that exists in the image or a numeric UID"
            )
        uid = _numeric(entry[2])
        gid = _numeric(entry[3])
        if uid is None or gid is None:
            raise InvalidArgument(f"--chown {spec!r}: the passwd entry of {user!r} is malformed")
    elif not sep:
        gid = uid
    if sep:
        gid = _numeric(group)
        if gid is None:
            entry = _lookup(read_etc_file(root, "/etc/group"), group, 2)
            if entry is None:
                raise InvalidArgument(
                    f"--chown {spec!r}: unknown group {group!r} in the container's /etc/group: "
                    "use a group that exists in the image or a numeric GID"
                )
            gid = _numeric(entry[2])
            if gid is None:
                raise InvalidArgument(
                    f"--chown {spec!r}: the group entry of {group!r} is malformed"
                )
    assert gid is not None
    return uid, gid
