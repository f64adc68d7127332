"""Import httpx (and httpcore) without the parts a synchronous registry client never uses.

``import httpx`` also imports its command-line tool (``httpx._main``: rich,
pygments, click), and httpcore imports ``trio`` at import time whenever trio
is installed, only to support async code running under trio. Together that is
most of a ``kiln pull``'s import time. Both are hidden while httpx and httpcore
load — an entry of ``None`` in ``sys.modules`` makes an import fail, which both
libraries treat as "not installed" — and are visible again right after, so any
other code in the process can still import them.

Every kiln module that uses them imports them from here (``from kiln.registry._lean_httpx
import httpx``), so whichever registry module loads first, httpx loads lean.

Effects in this process: ``httpx.main`` prints "install httpx[cli]" instead of
running, and httpcore's *async* primitives do not support trio (kiln's clients
are synchronous). Nothing changes when trio was imported before kiln.registry.
"""

from __future__ import annotations

import sys

__all__ = ["httpcore", "httpx"]

_HIDDEN = ("httpx._main", "trio")


def _load() -> None:
    hidden = [name for name in _HIDDEN if name not in sys.modules]
    for name in hidden:
        # None in sys.modules makes an import of it fail (documented); typeshed wants a module
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import httpcore  # noqa: F401 - httpx imports it lazily, on the first Client
        import httpx  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


_load()

import httpcore  # noqa: E402 - loaded above, without its CLI and trio
import httpx  # noqa: E402
