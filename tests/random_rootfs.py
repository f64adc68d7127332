"""A root filesystem tarball holding one file of random bytes: compressed, its layer is
as large, so moving it takes a known number of bytes (progress and interrupt tests)."""

from __future__ import annotations

import io
import os
import tarfile


def random_rootfs_tar(path, size: int) -> str:
    """Write the tarball to ``path`` (one file ``big`` of ``size`` random bytes); returns
    the path."""
    data = os.urandom(size)
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("big")
        info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
        tar.addfile(info, io.BytesIO(data))
    return str(path)
