"""A regular expression compiled at its first use, not when its module is imported.

``re.compile`` at module level runs the regex compiler (Python code: 50-300 us a
pattern) in every process that imports the module, and a short command imports dozens
of modules whose patterns it never matches (a tag's digest form, a port range, a git
commit id). Such a pattern is declared with ``lazy_pattern`` and called for its
compiled ``re.Pattern``, which is made on the first call and kept::

    _PORT = lazy_pattern(r"^(\\d+)(?:-(\\d+))?$")
    ...
    match = _PORT().match(text)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

__all__ = ["lazy_pattern"]


def lazy_pattern(pattern: str, flags: int = 0) -> Callable[[], re.Pattern[str]]:
    """A function returning ``re.compile(pattern, flags)``, compiled once, on its first call."""

    @functools.cache
    def compiled() -> re.Pattern[str]:
        return re.compile(pattern, flags)

    return compiled
