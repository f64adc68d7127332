"""How much disk a directory tree takes: what removing it frees.

Apparent sizes (``du -sb``): every file, symlink and directory's ``st_size``, each
inode once (hard links), without crossing into other file systems (a snapshot still
mounted on its mount point is not counted as its own size).
"""

from __future__ import annotations

import os


def tree_size(path: str) -> int:
    """The apparent size of ``path`` and everything below it; 0 if it does not exist."""
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return 0
    seen: set[tuple[int, int]] = {(top.st_dev, top.st_ino)}
    total = top.st_size
    stack = [path] if os.path.isdir(path) and not os.path.islink(path) else []
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != top.st_dev or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return total
