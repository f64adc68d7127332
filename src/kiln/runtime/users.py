"""Resolve ``--user`` against the container's own /etc/passwd and /etc/group (read in-root)."""

from __future__ import annotations

from dataclasses import field

from kiln.errors import InvalidArgument
from kiln.util.inroot import FileRefused, InRoot
from kiln.util.lazy_dataclass import dataclass

# Far above any real passwd/group file; a larger one is refused, not read.
MAX_ETC_FILE = 16 * 1024 * 1024


@dataclass(frozen=True)
class ResolvedUser:
    """A USER resolved against the image's passwd and group files."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = field(default=())
    home: str = "/"
    name: str = ""


@dataclass(frozen=True)
class _Passwd:
    """One line of /etc/passwd."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class _Group:
    """One line of /etc/group."""

    name: str
    gid: int
    members: tuple[str, ...]


def _id(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) < 2**32 else None


def read_etc_file(root: InRoot, path: str) -> str:
    """The text of ``/etc/passwd`` or ``/etc/group`` of the container ("" when missing).

    Resolved in-root (a symlink to a host file means the container's own path, never the
    host's); a FIFO, a device, a directory or a file over ``MAX_ETC_FILE`` is refused with a
    clear error, as is a symlink loop. The one reader for USER, ``--user`` and ``--chown``."""
    try:
        data = root.read_regular(path, MAX_ETC_FILE)
    except FileRefused as exc:
        raise InvalidArgument(
            f"cannot read {path} of the container: {exc.reason}; fix the file in the image"
        ) from None
    except OSError as e:
        raise InvalidArgument(
            f"cannot read {path} of the container: {e.strerror}; fix the file in the image"
        ) from None
    return (data or b"").decode("utf-8", "replace")


def _read(rootfs: str, path: str) -> str:
    with InRoot.opened(rootfs) as root:
        return read_etc_file(root, path)


def _read_passwd(rootfs: str) -> list[_Passwd]:
    text = _read(rootfs, "/etc/passwd")
    entries = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 7 or line.startswith("#"):
            continue
        uid, gid = _id(parts[2]), _id(parts[3])
        if uid is not None and gid is not None:
            entries.append(_Passwd(parts[0], uid, gid, parts[5] or "/"))
    return entries


def _read_group(rootfs: str) -> list[_Group]:
    text = _read(rootfs, "/etc/group")
    entries = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 4 or line.startswith("#"):
            continue
        gid = _id(parts[2])
        if gid is not None:
            members = tuple(m for m in parts[3].split(",") if m)
            entries.append(_Group(parts[0], gid, members))
    return entries


def resolve_user(rootfs: str, spec: str) -> ResolvedUser:
    """``name``, ``uid``, ``uid:gid``, ``name:group``... -> uid, gid, groups and home.

    Like buildah: a numeric uid needs no passwd entry (its gid is then the entry's primary
    group, else 0); a user or group *name* must exist in the container's files.
    """
    user_part, _, group_part = (spec or "0").partition(":")
    user_part = user_part or "0"
    passwd = _read_passwd(rootfs)
    uid = _id(user_part)
    entry: _Passwd | None
    if uid is not None:
        entry = next((p for p in passwd if p.uid == uid), None)
    else:
        entry = next((p for p in passwd if p.name == user_part), None)
        if entry is None:
            raise InvalidArgument(
                f'unknown user "{user_part}" in /etc/passwd of the container: '
                "use a user that exists in the image or a numeric UID"
            )
        uid = entry.uid
    groups = _read_group(rootfs)
    if group_part:
        gid = _id(group_part)
        if gid is None:
            group = next((g for g in groups if g.name == group_part), None)
            if group is None:
                raise InvalidArgument(
                    f'unknown group "{group_part}" in /etc/group of the container: '
                    "use a group that exists in the image or a numeric GID"
                )
            gid = group.gid
    else:
        gid = entry.gid if entry else 0
    # As buildah with runc: the process's groups are its gid, plus, when no group was given,
    # every /etc/group entry that lists the user (``id`` shows them all under ``groups=``).
    extra: list[int] = [gid]
    if entry is not None and not group_part:
        for g in groups:
            if entry.name in g.members and g.gid not in extra:
                extra.append(g.gid)
    return ResolvedUser(
        uid=uid,
        gid=gid,
        additional_gids=tuple(extra),
        home=entry.home if entry else "/",
        name=entry.name if entry else "",
    )
