"""The per-directory checksum index of a build context: what makes a no-op rebuild cost one
``lstat`` per file and almost nothing else.

``BuildContext.digest`` of an unfiltered directory feeds one line per entry, parents first,
sorted (``<path>\\0<kind>\\0<mode>\\0<payload>\\n``; a file's or directory's payload ends
with the xattrs a copy keeps, when it has any) into one sha256. The index keeps, per
directory it walked (by context-relative path):

- the device of the directory and the sorted names of its entries;
- a packed array of (inode, size, mtime_ns, ctime_ns, mode) per entry;
- the entry lines themselves, one blob, with the offset of each entry's line;
- the directory's own packed stat key when it was listed, if it was old enough then.

A rebuild lists the directory (or, when its own stat key is still the stored one, takes
the stored names: see ``list_dir``), stats every entry and compares the packed stat keys
with the stored ones in one bytes comparison; when they are equal, the stored lines go
into the digest as they are (a directory entry's line is followed by its own subtree,
walked the same way). Any difference sends that directory down the entry-by-entry path,
which still takes the stored checksum of every file whose key did not change. The stat
key is the one of the per-file cache (see :mod:`kiln.build.context`): a rewrite that puts
the mtime back still moves the ctime; a directory is recorded only when none of its
entries changed less than ``RACY_NS`` before it was read.

The index is one file per context directory in the store: a magic, then frames (a 4-byte
length and a ``marshal`` object: a header naming the version and the context, then one
``(path, record)`` per directory), then a CRC-32 of the frames, so that a torn or foreign
file is ignored, never trusted. It is written and read a frame at a time (the index of
200,000 files is ~31 MB: made whole, it was held twice beside its records); loading it
takes ~15-40 ms where the same rows from SQLite took ~0.45 s. It is a cache: it is
written (atomically, without fsync) only when something changed, and a lost or damaged
one costs one rehash.
"""

from __future__ import annotations

import io
import marshal
import os
import stat
import time
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import field
from itertools import chain
from operator import attrgetter
from typing import Any

from kiln.util.lazy_dataclass import dataclass

__all__ = [
    "RACY_NS",
    "XATTRS_MARK",
    "DirIndex",
    "DirRecord",
    "Listing",
    "list_dir",
    "pack_keys",
    "payload_of",
]

#: a stat key taken less than this after the last change of what it describes is not
#: trusted later (git's "racy" files: a change within the file system's timestamp
#: granularity may leave every time as it was); more than any common file system's
#: granularity. The context's file checksums use it too (``kiln.build.context``).
RACY_NS = 2_000_000_000

_MAGIC = b"KILNCTX2"
_VERSION = 6  # 6: lines name the xattrs a copy keeps (an index of 5 has none: dropped)
_LENGTH = 4  # bytes of a frame's length, and of the CRC-32 at the end
_FIELDS = 5  # inode, size, mtime_ns, ctime_ns, mode
_OFFSET_SIZE = array("I").itemsize
_CRC_CHUNK = 1 << 20  # bytes of a stored index read at a time to check its CRC
_KEY = attrgetter("st_ino", "st_size", "st_mtime_ns", "st_ctime_ns", "st_mode")


def pack_keys(stats: list[os.stat_result]) -> bytes | None:
    """The packed stat keys of ``stats`` (None if one does not fit an unsigned 64-bit
    field, e.g. a time before 1970: such a directory is never recorded)."""
    try:
        return array("Q", chain.from_iterable(map(_KEY, stats))).tobytes()
    except OverflowError:
        return None


@dataclass(frozen=True, slots=True)
class Listing:
    """A directory as a walk sees it: its entries' names, sorted, with their lstat."""

    dev: int
    names: list[str]
    stats: list[os.stat_result]
    keys: bytes | None  # pack_keys(stats)
    #: the directory's own packed stat key, if old enough to vouch for its names (b"":
    #: changed less than ``RACY_NS`` before it was listed, or not packable)
    own: bytes = b""


def list_dir(dfd: int, record: DirRecord | None = None) -> Listing:
    """The listing of the open directory ``dfd`` (an entry removed meanwhile is left out).

    When the directory's own stat key is still ``record.own``, its names are the record's
    and only they are stat'ed (no ``getdents``: ~20 % of an unchanged walk's system time).
    Creating, removing or renaming an entry moves its directory's mtime and ctime (POSIX;
    git's untracked cache relies on it the same way), and ``own`` is kept only for a
    listing made ``RACY_NS`` after the directory's last change, so a later change cannot
    leave its times as they were. An entry of the record gone meanwhile: listed after all.
    """
    now = time.time_ns()
    st = os.fstat(dfd)  # before the names: a change while they are read moves the key
    own = _own_key(st)
    if record is not None and record.own and record.own == own:
        names = record.entry_names()
        try:
            sts = _lstats(dfd, names)
        except FileNotFoundError:
            pass  # an entry removed: the directory is listed
        else:
            return Listing(st.st_dev, names, sts, pack_keys(sts), own)
    names = sorted(os.listdir(dfd))
    try:
        sts = _lstats(dfd, names)
    except FileNotFoundError:  # removed since listed: the ones still there
        names, sts = _still_there(dfd, names)
    trusted = now - max(st.st_mtime_ns, st.st_ctime_ns) >= RACY_NS
    return Listing(st.st_dev, names, sts, pack_keys(sts), own if trusted else b"")


def _lstats(dfd: int, names: list[str]) -> list[os.stat_result]:
    """The lstat of each of ``names`` in the open directory ``dfd`` (the no-op's hot loop: a
    comprehension calls ``lstat`` with ``dir_fd`` by keyword name; ``map`` over a
    ``functools.partial`` holding the keyword took ~1,100 more instructions a file)."""
    lstat = os.lstat
    return [lstat(name, dir_fd=dfd) for name in names]


def _own_key(st: os.stat_result) -> bytes:
    """A directory's own packed stat key (b"" if a field does not fit)."""
    return pack_keys([st]) or b""


def _still_there(dfd: int, names: list[str]) -> tuple[list[str], list[os.stat_result]]:
    kept, stats = [], []
    for name in names:
        try:
            stats.append(os.stat(name, dir_fd=dfd, follow_symlinks=False))
        except FileNotFoundError:
            continue
        kept.append(name)
    return kept, stats


@dataclass
class DirRecord:
    """One directory's entries as last digested (see the module docstring)."""

    dev: int
    names: str  # the entry names, sorted, joined by NUL
    keys: bytes  # pack_keys of the entries' lstat
    lines: bytes  # every entry's digest line, in order
    offsets: bytes  # array("I"): len(entries) + 1 offsets into ``lines``
    dirs: bytes  # array("I"): the indexes of the entries that are directories
    #: what a filtered walk (an ignore file, ``--exclude``) kept of each entry (one byte
    #: each: see ``kiln.build.context``), and the filter's signature ("" for none)
    sig: str = ""
    mask: bytes = b""
    #: every entry has its line (a filtered walk hashes no file it skips: an empty line)
    complete: bool = True
    #: the directory's own stat key when its names were listed (``Listing.own``)
    own: bytes = b""
    _by_name: dict[str, int] | None = field(default=None, repr=False, compare=False)

    def matches(self, listing: Listing) -> bool:
        """Whether the directory still holds exactly these entries, each with its stat key."""
        return (
            listing.keys is not None
            and self.keys == listing.keys
            and self.dev == listing.dev
            and self.names == "\0".join(listing.names)
        )

    def count(self) -> int:
        """How many entries the directory had."""
        return len(self.offsets) // _OFFSET_SIZE - 1

    def entry_names(self) -> list[str]:
        return self.names.split("\0") if self.names else []

    def spans(self) -> array:
        out = array("I")
        out.frombytes(self.offsets)
        return out

    def lookup(self, name: str, key: tuple[int, ...]) -> bytes | None:
        """The stored line of entry ``name`` if its stat key (dev, ino, size, mtime_ns,
        ctime_ns, mode) is still ``key``."""
        if self._by_name is None:
            self._by_name = self.positions()
        return self.line_at(self._by_name.get(name), key)

    def positions(self) -> dict[str, int]:
        """{name: its index among the entries} (made on each call: the caller keeps it)."""
        return {n: i for i, n in enumerate(self.names.split("\0"))}

    def line_at(self, i: int | None, key: tuple[int, ...]) -> bytes | None:
        """The stored line of entry ``i`` if its stat key is still ``key`` (see ``lookup``)."""
        if i is None or key[0] != self.dev:
            return None  # (an empty line: a file a filtered walk skipped, never hashed)
        keys = array("Q")
        keys.frombytes(self.keys[i * _FIELDS * 8 : (i + 1) * _FIELDS * 8])
        if tuple(keys) != key[1:]:
            return None
        spans = self.spans()
        return self.lines[spans[i] : spans[i + 1]] or None

    def files(self) -> list[tuple[tuple[int, ...], str]]:
        """((dev, ino, size, mtime_ns, ctime_ns, mode), digest) of its regular files (those
        a filtered walk skipped have none)."""
        keys = array("Q")
        keys.frombytes(self.keys)
        spans = self.spans()
        out = []
        for i in range(len(spans) - 1):
            key = tuple(keys[i * _FIELDS : (i + 1) * _FIELDS])
            line = self.lines[spans[i] : spans[i + 1]]
            if stat.S_ISREG(key[4]) and line:
                out.append(((self.dev, *key), payload_of(line)))
        return out

    def to_tuple(self) -> tuple:
        return (self.dev, self.names, self.keys, self.lines, self.offsets, self.dirs, self.sig,
                self.mask, self.complete, self.own)  # fmt: skip

    def dir_indexes(self) -> array:
        out = array("I")
        out.frombytes(self.dirs)
        return out


_FIELD_TYPES = (int, str, bytes, bytes, bytes, bytes, str, bytes, bool, bytes)


def _well_formed(record: DirRecord) -> bool:
    """Whether every field has its type and every name could be an entry's: an index whose
    CRC matches may still come from another writer (a crafted or foreign file), and the
    walk opens and stats the names of a record whose directory kept its own key; a check
    per directory, not per entry."""
    return all(
        type(v) is t for v, t in zip(record.to_tuple(), _FIELD_TYPES, strict=True)
    ) and _plain_names(record.names)


def _plain_names(names: str) -> bool:
    """Whether NUL-joined ``names`` hold only names a listing gives: none empty, ".",
    ".." or with a "/" (substring searches: a regular expression cost ~0.3 ms a
    directory)."""
    if not names:
        return True
    framed = f"\0{names}\0"
    return not ("/" in names or "\0\0" in framed or "\0.\0" in framed or "\0..\0" in framed)


#: after a file's or directory's payload, the xattrs a copy of it keeps (only when it has any)
XATTRS_MARK = " xattrs:"


def payload_of(line: bytes) -> str:
    """A file's ``sha256:...``: the last field of its digest line, without its xattrs."""
    field = line[line.rindex(b"\0") + 1 : -1].decode("utf-8", "surrogateescape")
    return field.partition(XATTRS_MARK)[0]


class DirIndex:
    """The records of one context directory, as loaded, plus this build's changes."""

    def __init__(self, records: dict[str, DirRecord] | None = None):
        self.records: dict[str, DirRecord] = records or {}
        self.changed = False

    @classmethod
    def load(cls, data: bytes | None, root: str) -> DirIndex:
        """The index in ``data`` (a damaged, foreign or other-version one is empty)."""
        if not data or not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + _LENGTH:
            return cls()
        frames = memoryview(data)[len(_MAGIC) : -_LENGTH]
        if zlib.crc32(frames) != int.from_bytes(data[-_LENGTH:], "big"):
            return cls()
        return cls._parsed(_frames(frames), root)

    @classmethod
    def read(cls, f: io.BufferedReader, root: str) -> DirIndex:
        """The index stored in the file ``f``, as ``load`` reads it, a piece at a time: its
        CRC checked first, then its frames parsed one by one (read whole, the 31 MB of a
        200,000-file index were one more allocation beside its records: ~20 ms of page
        faults on every no-op rebuild, and 31 MB more peak RSS)."""
        try:
            size = os.fstat(f.fileno()).st_size
            if not _crc_matches(f, size):
                return cls()
            f.seek(len(_MAGIC))
            return cls._parsed(_frames_read(f, size - len(_MAGIC) - _LENGTH), root)
        except (OSError, ValueError):
            return cls()

    @classmethod
    def _parsed(cls, frames: Iterator[bytes | memoryview], root: str) -> DirIndex:
        """The index whose frames (their CRC checked) are ``frames``."""
        try:
            head = marshal.loads(next(frames, b""))
            if type(head) is not dict or head.get("v") != _VERSION or head.get("root") != root:
                return cls()
            records = {}
            for frame in frames:
                rel, rec = marshal.loads(frame)
                if type(rel) is not str:
                    return cls()
                records[rel] = DirRecord(*rec)
            if not all(map(_well_formed, records.values())):
                return cls()
            return cls(records)
        except (EOFError, ValueError, TypeError, AttributeError, KeyError):
            return cls()

    def dump(self, root: str) -> Iterator[bytes]:
        """The index as stored, a frame at a time (see the module docstring: the whole of
        it is never held). The records are taken now, when called, not as the frames are
        read: call it under the lock the walks that change records take (another stage's
        walk may add, drop or re-filter a record while the frames are written)."""
        items: list[Any] = [{"v": _VERSION, "root": root}]
        items += [(rel, rec.to_tuple()) for rel, rec in self.records.items()]
        return _framed(items)

    def forget_below(self, top: str, keep: set[str]) -> None:
        """Drop the records of directories at or below ``top`` not in ``keep`` (they were not
        met walking ``top`` whole: gone, or no longer directories)."""
        prefix = top + "/" if top else ""
        stale = [
            rel
            for rel in self.records
            if rel not in keep and (not top or rel == top or rel.startswith(prefix))
        ]
        for rel in stale:
            del self.records[rel]
        if stale:
            self.changed = True


def _framed(items: list[Any]) -> Iterator[bytes]:
    """The stored form of ``items`` (the header, then the records), a frame at a time."""
    yield _MAGIC
    crc = 0
    for item in items:
        frame = marshal.dumps(item)
        length = len(frame).to_bytes(_LENGTH, "big")
        crc = zlib.crc32(frame, zlib.crc32(length, crc))
        yield length
        yield frame
    yield crc.to_bytes(_LENGTH, "big")


def _frames(data: memoryview) -> Iterator[memoryview]:
    """The frames of an index's body (ValueError where a length runs past its end)."""
    at = 0
    while at < len(data):
        end = at + _LENGTH + int.from_bytes(data[at : at + _LENGTH], "big")
        if end > len(data):
            raise ValueError("a frame runs past the end of the index")
        yield data[at + _LENGTH : end]
        at = end


def _crc_matches(f: io.BufferedReader, size: int) -> bool:
    """Whether the file ``f`` of ``size`` bytes starts with the magic and ends with the
    CRC-32 of the frames between (read through one small buffer)."""
    left = size - len(_MAGIC) - _LENGTH
    if left < 0 or f.read(len(_MAGIC)) != _MAGIC:
        return False
    buf = memoryview(bytearray(min(left, _CRC_CHUNK)))
    crc = 0
    while left:
        n = f.readinto(buf[: min(left, len(buf))])
        if not n:
            return False
        crc = zlib.crc32(buf[:n], crc)
        left -= n
    return f.read(_LENGTH) == crc.to_bytes(_LENGTH, "big")


def _frames_read(f: io.BufferedReader, size: int) -> Iterator[bytes]:
    """The frames of the ``size`` bytes of frames ``f`` is at (ValueError where a length
    runs past their end: nothing longer than the file is ever read)."""
    while size > 0:
        n = int.from_bytes(f.read(_LENGTH), "big")
        size -= _LENGTH + n
        if size < 0:
            raise ValueError("a frame runs past the end of the index")
        frame = f.read(n)
        if len(frame) != n:
            raise ValueError("the index is shorter than it was")
        yield frame
