"""``COPY --from=<stage|image> --exclude=PATTERN``: what the copy may read of the other tree.

The patterns follow the context's rules (``BuildContext.included``): ``.dockerignore``
syntax (``*``, ``?``, ``[...]``, ``**``, a ``!`` exception re-includes, the last match
wins, a directory matched takes everything below it), each path matched as it is relative
to its source, as BuildKit matches them (``COPY --from=base --exclude=*.mp3 dir3/ /3/``
leaves ``dir3/file-301.mp3`` out); a source itself, or a wildcard's match, is never
excluded (BuildKit copies it). The tree is mounted read-only; both the copier and the direct layer planner read
it through the answer, so a pattern never reaches outside it (``../*`` or ``/etc/*``
only ever match paths in it). The ignore file of the context does not apply here;
FIFOs and devices are kept, as an unfiltered COPY --from copies them.

Without a ``!`` pattern, whatever a pattern excludes it excludes with everything below
it, so each path is decided as the copy meets it (:class:`_Unexcluded`): nothing is
walked ahead and memory does not grow with the tree. With one, an excluded directory is
kept when something below it comes back, which only a walk can tell: the set of what
the walk keeps is made first, as for the context.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

from kiln.build.context import BuildContext
from kiln.build.dockerignore import IgnoreMatcher
from kiln.container.copy_add import is_url
from kiln.errors import NotFound

__all__ = ["from_included"]


def from_included(
    root: str, sources: Sequence[str], excludes: Sequence[str]
) -> Container[str] | None:
    """The paths of ``root`` a COPY --from of ``sources`` may read when ``excludes`` filter
    it (the copier's ``include``); None without patterns (all may be read). A source that
    is missing, or a wildcard that matches nothing, is NotFound, as for the context."""
    matcher = IgnoreMatcher(list(excludes))
    if not matcher.patterns:
        return None
    with BuildContext(root) as tree:
        try:
            if matcher.has_exclusions:
                return tree.included(sources, excludes, special=True)
            tops = [top for src in sources if not is_url(src) for top in tree.expand(src)]
        except NotFound as exc:
            raise NotFound(
                str(exc)
                .replace(" (or excluded by .dockerignore)", "")
                .replace("the build context", "the --from tree")
                .replace("the context", "the --from tree")
            ) from None
    return _Unexcluded(tree, tops, matcher)


class _Unexcluded:
    """The paths no pattern excludes, decided one by one: a source's own path (``tops``,
    what its wildcards matched), and a path below one that ``BuildContext.excluded``
    (pure: it reads no file) does not exclude relative to that source."""

    def __init__(self, tree: BuildContext, tops: list[str], matcher: IgnoreMatcher) -> None:
        self.tree = tree
        self.tops = tops
        self.matcher = matcher

    def __contains__(self, rel: object) -> bool:
        if not isinstance(rel, str):
            return False
        for top in self.tops:
            if rel == top:
                return True
            below = top == "" or rel.startswith(top + "/")
            if below and not self.tree.excluded(rel, self.matcher, top):
                return True
        return False
