"""New directories spread over the file system like top-level ones (ext4's ``chattr +T``).

ext4 places a new directory in a block group near its parent's, and the files made in it
in the directory's group. In a group where many inodes were freed in the last half
minute, an ext4 without a journal makes every new inode skip each of them, searching
again from the start of the group each time (``find_inode_bit``/``recently_deleted``):
2,000 new files after 4,000 were deleted nearby cost a second or more of kernel time
instead of a twentieth. Trees are deleted near a store all the time (its own pruned
layers and finished build containers, other stores and temporary trees beside it), and a
build step's snapshot then pays for it on every file it creates.

A directory with the "top of directory hierarchy" flag (``FS_TOPDIR_FL``) has each new
subdirectory placed as ext4 places one at the file system's root: in a group with few
directories and more free inodes and blocks than average, usually one nothing was
deleted from lately. Elsewhere (other file systems, which refuse or ignore the flag, or a
file system mounted read-only) nothing changes and nothing fails.
"""

from __future__ import annotations

import array
import fcntl
import os

__all__ = ["spread_subdirectories"]

_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000


def spread_subdirectories(path: str) -> bool:
    """Mark directory ``path`` so that directories made in it are spread (see the module);
    returns whether it is marked. Never raises for a file system without the flag."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = array.array("i", [0])  # the kernel reads and writes an int there
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        if flags[0] & FS_TOPDIR_FL:
            return True
        flags[0] |= FS_TOPDIR_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
        return True
    except OSError:  # ENOTTY, EOPNOTSUPP, EINVAL, EPERM, EROFS: not this file system's
        return False
    finally:
        os.close(fd)
