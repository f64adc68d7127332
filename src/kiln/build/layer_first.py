"""A COPY's layer written before its cache key is known: a big new file is read once.

A COPY/ADD's cache key holds the content digest of its sources. When that digest would
have to read a big file (the stat-keyed checksum cache does not know it: a first build,
or the file changed) and the step's layer may come straight from the context
(``kiln.build.copy_direct``), hashing it for the key first and then reading it again for
the layer costs a second read and leaves a core idle while the key's hash runs alone.
Instead (``BuildContext.digest_unless`` tells when) the layer is listed and
written first, each file's content sha256 taken in the same read
(``write_layer(on_content=...)``) and handed to the context (``BuildContext.learn``); the
key is then computed without reading a file, the key's hash running beside the tar,
compression and blob hashes on the two cores.

A cache hit drops the written blob: it was never published, so nothing is left; its cost
is the compression of the layer (3-4x the CPU of hashing alone). So the key still goes
first when a hit is likely (``StageRun._may_hit``): ``--cache-from`` is asked, or the store
built the same instruction on the same parent before (the same bytes with new times: a
fresh checkout, a context a client uploads again). A first build, a new parent or
``--no-cache`` writes first. On a miss the step's history (its content summary) comes from a
second listing that takes every file's digest from what the writer read
(:meth:`Written.known`); the written blob is used only if that listing names exactly the
entries written and the key read no file itself (the listing is compared as it streams by,
never held). Otherwise (the context changed meanwhile) it is dropped and the step goes on
as if it had not been written, from a new listing. The layer's bytes, and
so its digest and diff id, are those the step would write after the key: the same
listing, the same writer.

The digests handed over are kept compactly (:class:`LearnedDigests`: a write-first COPY
of 200,000 files holds one for each until its key is made).

``BuildOptions.write_first_at`` (bytes, default 32 MiB): the smallest file
the key's digest leaves to the writer (tests set it low; 0 turns this off).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from kiln.archive.entry import TarEntry
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from kiln.archive.tar_writer import LayerResult

__all__ = ["LearnedDigests", "WriteFirst", "Written", "write_first"]

#: what a first listing is given for a file whose digest the writer will take: the
#: listing's content summary is not used (the second listing makes the step's)
_LATER = "0" * 64

#: a listing of the step's layer: given a file's stat, its sha256 hex if known (None: the
#: listing reads it), (created_by, entries, what the layer holds) or None when the layer
#: cannot be listed
Plan = Callable[
    [Callable[[os.stat_result, str], "str | None"]], "tuple[str, Iterable[TarEntry], Any] | None"
]


@dataclass(frozen=True)
class WriteFirst:
    """What a COPY hands its stage when its key waits for its layer: ``key_files`` (the
    ``files`` part of the key, computed after the layer), ``learn``/``learned``/``forget``
    (the context keeps the digests the writer read, until told to forget them), ``known``
    (the context's own digests: a file it hashed or cached) and ``hashed`` (how many files
    the context has read so far, in this thread)."""

    key_files: Callable[[], dict[str, str]]
    learn: Callable[[os.stat_result, str], None]
    learned: Callable[[os.stat_result], str | None]
    forget: Callable[[], None]
    known: Callable[[os.stat_result, str], str | None]
    hashed: Callable[[], int]


class _Signature:
    """What two listings of one step must agree on, hashed as the entries go by (memory
    does not grow with them): each entry but the mtime (a directory the step creates
    carries the time of its listing)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def follow(self, entries: Iterable[TarEntry]) -> Iterator[TarEntry]:
        for e in entries:
            fields = (e.path, e.type, e.mode, e.uid, e.gid, e.size, e.linkname, e.source,
                      e.expect, e.devmajor, e.devminor, sorted(e.xattrs.items()))  # fmt: skip
            self._hash.update(repr(fields).encode("utf-8", "surrogateescape") + b"\n")
            yield e

    def digest(self) -> bytes:
        return self._hash.digest()


def _signature(entries: Iterable[TarEntry]) -> bytes:
    sig = _Signature()
    for _ in sig.follow(entries):
        pass
    return sig.digest()


@dataclass
class Written:
    """A layer written before the step's key: its result and sealed, unpublished ingest."""

    result: LayerResult
    ingest: Any
    signature: bytes
    #: the sha256 hex the writer took of the file a stat names, if it read that file
    learned: Callable[[os.stat_result], str | None]

    def known(self, st: os.stat_result, label: str = "") -> str | None:
        """The sha256 hex the writer took of the file ``st`` names, if it read that file
        (a ``KnownDigest``: the label is not needed)."""
        return self.learned(st)

    def take(self, entries: Iterable[TarEntry]) -> tuple[LayerResult, Any] | None:
        """(result, ingest) for the commit, if ``entries`` (the second listing) are the ones
        written; else None, the blob dropped. Either way this object holds nothing after."""
        listed = _signature(entries)
        if listed != self.signature:
            self.close()
            return None
        ingest, self.ingest = self.ingest, None
        return self.result, ingest

    def close(self) -> None:
        if self.ingest is not None:
            ingest, self.ingest = self.ingest, None
            ingest.close()


def write_first(
    store: Any, plan: Plan, first: WriteFirst, compression: str, timestamp: int | None
) -> Written | None:
    """List the step's layer (files the context does not know are left unhashed) and write
    it into an unpublished ingest, each file's digest handed to ``first.learn``; None
    when it cannot be listed."""
    # start-up: the layer writer (and its compressors) come with kiln.container.commit,
    # which a build that hits the cache never needs (as in StageRun._commit_here)
    from kiln.archive.compression import Compression
    from kiln.container.commit import write_layer_blob

    def known(st: os.stat_result, label: str) -> str | None:
        return first.known(st, label) or _LATER

    planned = plan(known)
    if planned is None:
        return None
    signature = _Signature()

    def on_content(entry: TarEntry, st: os.stat_result, hexdigest: str) -> None:
        first.learn(st, hexdigest)

    entries = signature.follow(planned[1])
    result, ingest = write_layer_blob(store, entries, Compression(compression), timestamp,
                                      on_content=on_content)  # fmt: skip
    return Written(result, ingest, signature.digest(), first.learned)


#: (dev, ino, size, mtime_ns, ctime_ns, mode), as the context's stat keys
_STAT_KEY = struct.Struct("=QQqqqQ")


class LearnedDigests:
    """``sha256:...`` digests by file, each valid for one stat key: what the writer hands the
    context (``BuildContext.learn``), or a digest that stopped read before it stopped,
    kept for the step. 200,000 files held as tuples and strings took ~360 B a file (a
    200,000-file COPY with one big file peaked at 192 MB RSS); each is kept here as one
    bytes of its packed stat key and raw digest under one int naming the file (~190 B a
    file: that COPY peaks at ~121 MB). A digest is given back only for the file under
    exactly the stat key it was read with."""

    __slots__ = ("_by_file",)

    def __init__(self) -> None:
        self._by_file: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._by_file)

    def put(self, key: tuple[int, ...], digest: str) -> None:
        """Keep ``digest`` (``sha256:<hex>``) of the file read under stat ``key`` (a key
        that does not fit its 64-bit fields is not kept: the file is read again)."""
        try:
            packed = _STAT_KEY.pack(*key) + bytes.fromhex(digest.removeprefix("sha256:"))
        except (struct.error, ValueError):
            return
        self._by_file[key[0] << 64 | key[1]] = packed

    def get(self, key: tuple[int, ...]) -> str | None:
        """The digest kept for the file ``key`` names, if it was read under that key."""
        found = self._by_file.get(key[0] << 64 | key[1])
        if found is None:
            return None
        try:
            if found[: _STAT_KEY.size] != _STAT_KEY.pack(*key):
                return None
        except struct.error:
            return None
        return "sha256:" + found[_STAT_KEY.size :].hex()
