"""``KeptLines``: JSON lines a stream holds back to send only if its work fails (a quiet
``docker build``'s steps, which dockerd shows with the error and drops on success).

Bounded: past ``limit`` bytes the oldest lines go, so a quiet build of a RUN that prints
gigabytes keeps its last megabyte, the lines nearest the error.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from .streaming import json_line

KEPT_BYTES = 1 << 20


class KeptLines:
    """The last ``limit`` bytes (at least the last line) of the JSON lines given."""

    def __init__(self, limit: int = KEPT_BYTES):
        self.limit = limit
        self._lines: deque[tuple[dict[str, Any], int]] = deque()
        self._size = 0

    def extend(self, objs: Iterable[dict[str, Any]]) -> None:
        for obj in objs:
            size = len(json_line(obj))
            self._lines.append((obj, size))
            self._size += size
            while self._size > self.limit and len(self._lines) > 1:
                self._size -= self._lines.popleft()[1]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (obj for obj, _ in self._lines)

    def __bool__(self) -> bool:
        return bool(self._lines)


__all__ = ["KEPT_BYTES", "KeptLines"]
