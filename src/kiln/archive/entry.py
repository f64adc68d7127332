"""What goes into a layer tar: ``TarEntry``, its tar name and the canonical order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field

from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass

ENTRY_TYPES = frozenset(
    {"file", "dir", "symlink", "hardlink", "char", "block", "fifo", "whiteout", "opaque"}
)


@dataclass(frozen=True)
class TarEntry:
    """One layer entry.

    ``path`` is relative ("etc/passwd", no leading slash). ``source`` is the host
    path whose bytes a "file" carries. ``mtime`` is an ``int`` of nanoseconds
    or a ``float`` of seconds since the epoch. "whiteout" deletes ``path``;
    "opaque" hides everything lower layers had under directory ``path``.
    ``linkname`` is a symlink's target or a hard link's (relative) target path.
    ``expect``: a "file" read from a tree that may change under the writer (a build
    context) carries the (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) it was
    listed with; the writer refuses the file if it is not that file, unchanged, before
    and after reading it.
    """

    path: str
    type: str
    source: str | None = None
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int | float = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)
    expect: tuple[int, int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.type not in ENTRY_TYPES:
            raise InvalidArgument(f"unknown tar entry type {self.type!r} for {self.path!r}")

    @property
    def mtime_seconds(self) -> int:
        if isinstance(self.mtime, float):
            return int(self.mtime // 1)
        return self.mtime // 1_000_000_000


def clean_path(path: str) -> str:
    """``path`` without leading "/" or "./" and without empty or "." components."""
    if "\x00" in path:
        raise InvalidArgument(f"path {path!r} contains a NUL byte")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"layer path {path!r} must not contain '..'")
    return "/".join(parts)


def tar_name(entry: TarEntry) -> str:
    """The member name written for ``entry`` (directories get a trailing slash)."""
    path = clean_path(entry.path)
    if entry.type == "opaque":
        return f"{path}/.wh..wh..opq" if path else ".wh..wh..opq"
    if entry.type == "whiteout":
        parent, _, name = path.rpartition("/")
        if not name:
            raise InvalidArgument("a whiteout needs a path below the root")
        return f"{parent}/.wh.{name}" if parent else f".wh.{name}"
    if entry.type == "dir":
        return f"{path}/" if path else "./"
    if not path:
        raise InvalidArgument(f"a {entry.type} entry needs a path below the root")
    return path


def tar_mtime(entry: TarEntry, timestamp: int | None) -> int:
    """The mtime (whole seconds, never before the epoch) written for ``entry`` in a layer
    written with ``timestamp`` (which, given, is every entry's, as ``buildah --timestamp``)."""
    return max(0, entry.mtime_seconds if timestamp is None else timestamp)


def sort_key(entry: TarEntry) -> bytes:
    """Bytewise order of the member name; a parent always sorts before its children."""
    name = tar_name(entry)
    if name == "./":
        return b""
    return name.rstrip("/").encode("utf-8", "surrogateescape")


def sorted_entries(entries: Iterable[TarEntry]) -> list[TarEntry]:
    """``entries`` in canonical order: bytewise by path, parents before children."""
    return sorted(entries, key=sort_key)


__all__ = [
    "ENTRY_TYPES", "TarEntry", "clean_path", "sort_key", "sorted_entries", "tar_mtime", "tar_name",
]  # fmt: skip
