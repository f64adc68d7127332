"""``COPY --from=<stage|image> --exclude=PATTERN``: what the copy may read of the other tree.

The patterns follow the context's rules (``BuildContext.included``): ``.dockerignore``
syntax (``*``, ``?``, ``[...]``, ``**``, a ``!`` exception re-includes, the last match
wins, a directory matched takes everything below it), each path matched as it is in the
tree and, below a directory source, as it is relative to that source (BuildKit matches
the latter: ``COPY --from=base --exclude=*.mp3 dir3/ /3/`` leaves ``dir3/file-301.mp3``
out). The tree is mounted read-only; the set is walked in it, in-root, as the context's
is, and both the copier and the direct layer planner read through it, so a pattern
never reaches outside the tree (``../*`` or ``/etc/*`` only ever match paths in it).
The ignore file of the context does not apply here; FIFOs and devices are kept, as an
unfiltered COPY --from copies them.
"""

from __future__ import annotations

from collections.abc import Sequence

from kiln.build.context import BuildContext
from kiln.errors import NotFound

__all__ = ["from_included"]


def from_included(root: str, sources: Sequence[str], excludes: Sequence[str]) -> set[str] | None:
    """The paths of ``root`` a COPY --from of ``sources`` may read when ``excludes`` filter
    it (plus the directories leading to each); None without patterns (all may be read).
    A source that is itself excluded, or a wildcard whose every match is, is NotFound, as
    for the context."""
    if not any(p.strip() for p in excludes):
        return None
    with BuildContext(root) as tree:
        try:
            return tree.included(sources, excludes, special=True)
        except NotFound as exc:
            raise NotFound(
                str(exc)
                .replace(".dockerignore / --exclude", "--exclude")
                .replace("the build context", "the --from tree")
                .replace("the context", "the --from tree")
            ) from None
