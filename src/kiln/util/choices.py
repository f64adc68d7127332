"""The values users choose between where several commands and APIs take the same option.

One home for each set, its spellings and its check, so ``kiln pull``, ``kiln from``,
``kiln build``, the Docker/libpod routes and the library accept the same words.
"""

from __future__ import annotations

from enum import StrEnum

from kiln.errors import InvalidArgument


class PullPolicy(StrEnum):
    """When to pull an image that may already be in the store (podman's ``--pull``)."""

    ALWAYS = "always"
    MISSING = "missing"
    NEVER = "never"
    NEWER = "newer"

    @classmethod
    def parse(cls, text: str) -> PullPolicy:
        """podman's spellings too: ``true`` (always), ``false``/``ifmissing`` (missing),
        ``ifnewer`` (newer), in any case."""
        word = text.strip().lower()
        try:
            return cls(_PULL_ALIASES.get(word, word))
        except ValueError:
            raise InvalidArgument(
                f'invalid pull policy "{text}": use one of {", ".join(PULL_POLICIES)}'
            ) from None


_PULL_ALIASES = {"true": "always", "false": "missing", "ifmissing": "missing", "ifnewer": "newer"}
PULL_POLICIES = tuple(p.value for p in PullPolicy)
