"""Check a tar stream without extracting it: well formed, complete, and nothing escaping.

``check_tar`` reads an (uncompressed) tar stream to its end, with ``tarfile``
parsing headers only, and refuses what :func:`kiln.archive.applier.apply_layer`
would refuse later for the same bytes: a stream that is not a tar, a truncated
one, a bad header, an oversized PAX header, a member name with NUL or ``..``
above the root, a hard link to something not earlier in the same archive, an
unsupported member type. It is the gate for tarballs that become a layer on
their own (``kiln import``), so a broken or hostile tarball is refused when it
arrives instead of producing an image nobody can unpack.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable

from kiln.archive.applier import (
    _check_end,
    _entry_path,
    _next_member,
    _TailReader,
    open_tar_stream,
)
from kiln.archive.compression import CHUNK
from kiln.archive.streams import ByteReader
from kiln.errors import InvalidArgument

_KNOWN_TYPES = (
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.CONTTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.FIFOTYPE,
)


def check_tar(stream: ByteReader) -> int:
    """Read ``stream`` (a tar) to its end, checking every header; returns the member count.

    Raises InvalidArgument naming the first problem. Every byte of ``stream`` is
    read, so a tee around it sees the whole archive.
    """
    tail = _TailReader(stream)
    entries = 0
    check = member_check()
    try:
        with open_tar_stream(tail) as tf:
            while (member := _next_member(tf)) is not None:
                entries += 1
                check(member)
            _check_end(tail, tf.offset)
    except tarfile.TarError as exc:
        if str(exc) == "empty file" and tail.pos == 0:
            return 0
        if "unexpected end" in str(exc):
            raise InvalidArgument("tar archive is truncated") from None
        raise InvalidArgument(f"not a valid tar archive ({exc})") from None
    except EOFError:
        raise InvalidArgument("tar archive is truncated") from None
    while tail.read(CHUNK):
        pass
    return entries


def member_check() -> Callable[[tarfile.TarInfo], None]:
    """``check_tar``'s per-member checks, for one archive read by someone else: called with
    each member in order (``apply_layer``'s ``on_entry``), it raises InvalidArgument as
    ``check_tar`` would. Applying a tarball with it refuses what ``check_tar`` refuses."""
    seen: set[str] = set()
    return lambda member: _check_member(member, seen)


def _check_member(member: tarfile.TarInfo, seen: set[str]) -> None:
    path = _entry_path(member.name)
    if member.type not in _KNOWN_TYPES:
        raise InvalidArgument(f"tar entry {member.name!r} has unsupported tar type {member.type!r}")
    if member.issym() and "\x00" in member.linkname:
        raise InvalidArgument(f"symlink {member.name!r} has a NUL byte in its target")
    if member.islnk():
        target = _entry_path(member.linkname, "hard link target")
        if target not in seen:
            raise InvalidArgument(
                f"hard link {member.name!r} points to {member.linkname!r}, which is not in "
                "the archive before it; the archive is hostile or corrupt"
            )
    if not member.isdir():
        seen.add(path)


__all__ = ["check_tar", "member_check"]
