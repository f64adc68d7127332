"""``--volume HOST:CTR:O``: the host directory under an overlay whose writes stay with the run.

As buildah's ``O`` option: the container sees the host directory and may write to it, but
what it writes goes to an upper directory of the run's own (in the run's bundle), thrown
away when the run ends; the host directory is never written. The runtime (or chroot
isolation) mounts the overlay: kiln itself mounts nothing here.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile

from kiln.errors import InvalidArgument

from .options import Mount, RunOptions

OVERLAY = "overlay"  # the Mount type parse_volume gives an ``O`` volume


def with_overlay_dirs(opts: RunOptions, scratch: str) -> tuple[RunOptions, list[str]]:
    """``opts`` with each overlay volume given an upper and a work directory made under
    ``scratch``; and the directories to remove (``remove_overlay_dirs``) after the run."""
    if not any(m.type == OVERLAY for m in opts.mounts):
        return opts, []
    made: list[str] = []
    mounts = []
    try:
        for m in opts.mounts:
            if m.type != OVERLAY:
                mounts.append(m)
                continue
            if any(c in m.source for c in ":,"):
                raise InvalidArgument(
                    f"--volume {m.source}:{m.destination}:O: an overlay's host path cannot "
                    "hold ':' or ','"
                )
            top = tempfile.mkdtemp(prefix="overlay-", dir=scratch)
            made.append(top)
            upper, work = os.path.join(top, "upper"), os.path.join(top, "work")
            os.mkdir(upper, 0o755)
            os.mkdir(work, 0o700)
            data = (f"lowerdir={m.source}", f"upperdir={upper}", f"workdir={work}")
            mounts.append(Mount(OVERLAY, m.source, m.destination, (*m.options, *data)))
    except BaseException:
        remove_overlay_dirs(made)
        raise
    return dataclasses.replace(opts, mounts=mounts), made


def remove_overlay_dirs(made: list[str]) -> None:
    for top in made:
        shutil.rmtree(top, ignore_errors=True)
