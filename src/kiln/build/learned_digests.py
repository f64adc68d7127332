"""The content digests of context files someone else read (a layer writer), or a digest that
stopped read before it stopped, kept per file for the step that uses them.

A write-first COPY (:mod:`kiln.build.layer_first`) hands over the digest of every file it
wrote before the step's key is computed: held as tuples and strings they took ~360 B a
file (a 200,000-file COPY with one big file peaked at 192 MB RSS). Each is kept here as
one bytes of its packed stat key and raw digest under one int naming the file (~190 B a
file: that COPY peaks at ~121 MB). A digest is given back only for the
file under exactly the stat key it was read with.
"""

from __future__ import annotations

import struct

__all__ = ["LearnedDigests"]

#: (dev, ino, size, mtime_ns, ctime_ns, mode), as the context's stat keys
_KEY = struct.Struct("=QQqqqQ")


class LearnedDigests:
    """``sha256:...`` digests by file, each valid for one stat key."""

    __slots__ = ("_by_file",)

    def __init__(self) -> None:
        self._by_file: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._by_file)

    def put(self, key: tuple[int, ...], digest: str) -> None:
        """Keep ``digest`` (``sha256:<hex>``) of the file read under stat ``key`` (one that
        does not pack, e.g. a time before 1970 on a 32-bit field, is not kept: the file
        is read again)."""
        try:
            packed = _KEY.pack(*key) + bytes.fromhex(digest.removeprefix("sha256:"))
        except (struct.error, ValueError):
            return
        self._by_file[key[0] << 64 | key[1]] = packed

    def get(self, key: tuple[int, ...]) -> str | None:
        """The digest kept for the file ``key`` names, if it was read under that key."""
        found = self._by_file.get(key[0] << 64 | key[1])
        if found is None:
            return None
        try:
            if found[: _KEY.size] != _KEY.pack(*key):
                return None
        except struct.error:
            return None
        return "sha256:" + found[_KEY.size :].hex()
