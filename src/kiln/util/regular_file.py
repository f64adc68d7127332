"""Opening a file that must be a regular file, for reading, without blocking or following.

A blob of an image directory (``dir:``, an OCI layout) is read whole into the store: a
FIFO there would block the read for ever, a link to ``/dev/zero`` never end, a link out
of the directory read a file the directory does not hold. The file is opened with
``O_NOFOLLOW | O_NONBLOCK`` (a FIFO opens at once) and anything but a regular file is
refused with what it is. A file users keep as a link (an auth file in a dotfiles
repository) is opened with ``follow_links``: still no FIFO, no device.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from kiln.errors import InvalidArgument
from kiln.util.atomic import file_kind
from kiln.util.owned_open import open_into

__all__ = ["open_regular_file"]

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def open_regular_file(path: str, what: str = "file", *, follow_links: bool = False) -> BinaryIO:
    """``path`` opened for reading; InvalidArgument unless it is a regular file (a
    missing one raises FileNotFoundError)."""
    fds: list[int] = []  # the descriptor, the except's to close until the file owns it
    try:
        try:
            fd = open_into(fds, path, _FLAGS if follow_links else _FLAGS | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InvalidArgument(
                    f"{what} {path} is a symbolic link; kiln does not read through one"
                ) from None
            if isinstance(exc, FileNotFoundError):
                raise
            raise InvalidArgument(f"cannot read {what} {path}: {exc.strerror}") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InvalidArgument(f"{what} {path} is a {file_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        while fds:
            os.close(fds.pop())
        raise
    # outside the ``try``: a Ctrl-C as fdopen returns drops the file, which closes the
    # descriptor once (inside, the except would close it too, and then the file a number
    # that may be another's by then)
    return os.fdopen(fds[0], "rb")
