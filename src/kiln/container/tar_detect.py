"""ADD's archive handling: is a local file a tar (plain, gzip, bzip2, xz, zstd)? extract it.

Detection is by content, as Docker does: the (decompressed) stream must start with a valid
tar header. Extraction goes through ``archive.applier.extract_tar`` (safe, in-root).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from typing import Any, Protocol

from kiln.archive.applier import extract_tar
from kiln.archive.compression import detect, open_decompressed
from kiln.archive.safe_root import SafeRoot
from kiln.errors import InvalidArgument

_BLOCK = 512


def _open(root: SafeRoot, rel: str) -> io.BufferedReader:
    return os.fdopen(root.open_regular(rel, follow=True), "rb")


def looks_like_tar(head: bytes) -> bool:
    """Whether ``head`` (at least 512 bytes) is a tar header with a valid checksum."""
    if len(head) < _BLOCK or head[:_BLOCK] == b"\0" * _BLOCK:
        return False
    try:
        tarfile.TarInfo.frombuf(head[:_BLOCK], "utf-8", "surrogateescape")
    except (tarfile.HeaderError, ValueError):
        return False
    return True


def is_archive(root: SafeRoot, rel: str) -> bool:
    """Whether the file ``rel`` of ``root`` is a tar archive, compressed or not (a FIFO or
    device is not one, and is never opened for reading)."""
    if not stat.S_ISREG(root.stat(rel, follow=True).st_mode):
        return False
    with _open(root, rel) as f:
        magic = f.read(6)
        f.seek(0)
        if detect(magic).value == "none":
            return looks_like_tar(f.read(_BLOCK))
        try:
            with open_decompressed(f) as reader:
                head = _read_exactly(reader, _BLOCK)
        except (InvalidArgument, OSError, EOFError, ValueError):
            return False
        return looks_like_tar(head)


def _read_exactly(stream, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = stream.read(size - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


class _ReadInto(Protocol):
    def readinto(self, buf: Any, /) -> int | None: ...


class _Hashing(io.RawIOBase):
    def __init__(self, inner: _ReadInto):
        self.inner = inner
        self.h = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self.inner.readinto(buf) or 0
        if n:
            self.h.update(memoryview(buf)[:n])
        return n or 0


def extract_archive(root: SafeRoot, rel: str, rootfs: str, dest_path: str) -> str:
    """Extract archive ``rel`` of ``root`` into ``dest_path`` of ``rootfs``, its entries
    keeping the owners recorded in it; returns its sha256."""
    pfds: list[int] = []
    with SafeRoot.opened(rootfs) as dst:
        try:
            pfd = dst.open_path_into(pfds, dest_path, follow=True)
            target = f"/proc/self/fd/{pfd}"
            with _open(root, rel) as f:
                hashing = _Hashing(f)
                extract_tar(io.BufferedReader(hashing, 1 << 20), target)
                while hashing.read(1 << 20):
                    pass
            return "sha256:" + hashing.h.hexdigest()
        finally:
            for fd in pfds:  # one at most
                os.close(fd)
