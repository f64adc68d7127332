"""What COPY layers written straight (not unpacked) hold, for the direct COPY after them.

A COPY whose layer is written straight from its sources (``kiln.build.copy_direct``)
leaves that layer as a blob only. The next COPY of the stage, if it goes direct too, plans
against the image below those layers (unpacked, mounted read-only) instead of unpacking
them: what it looks up there is what the full image holds, unless the layers above hold
it. ``Claims`` says what they hold: the directories they list one by one are known
(``dirs``: the planner takes their metadata from there, so a second COPY into the
directories the first made, or copied up, plans on), and the planner falls back to the
materialising path (which unpacks them) when it meets anything else they hold. A direct
layer never removes anything (no whiteouts): a name it does not hold is, in the full
image, what it is below.
"""

from __future__ import annotations

from dataclasses import field

from kiln.archive.entry import TarEntry
from kiln.util.lazy_dataclass import dataclass

__all__ = ["Claims"]


@dataclass(frozen=True)
class Claims:
    """Paths ("a/b", no leading slash) of the entries of one or more layers, the
    directories whose whole trees they made (``trees``: everything below is theirs), and
    the directory entries they list themselves (``dirs``, the last layer's where several
    list one: what the image holds there)."""

    paths: frozenset[str] = frozenset()
    trees: frozenset[str] = frozenset()
    dirs: dict[str, TarEntry] = field(default_factory=dict)

    def touches(self, rel: str) -> bool:
        """Whether ``rel`` is one of the entries, or at or below one of the trees."""
        rel = rel.strip("/")
        if rel in self.paths:
            return True
        if not self.trees:
            return False
        at = -1
        while True:
            at = rel.find("/", at + 1)
            if (rel if at < 0 else rel[:at]) in self.trees:
                return True
            if at < 0:
                return False

    def __or__(self, other: Claims) -> Claims:
        """These layers, then ``other`` on them."""
        return Claims(self.paths | other.paths, self.trees | other.trees,
                      {**self.dirs, **other.dirs})  # fmt: skip
