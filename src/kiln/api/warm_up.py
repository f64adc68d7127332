"""The build engine loads in the background once ``kiln serve`` listens.

A server starts without it (a third of kiln's modules: see ``test_api_serve_imports``), so
it answers sooner; then one thread imports it, off the event loop, and the first
``docker build`` costs what a later one does, as with dockerd, which is warm from its
start. A build that arrives meanwhile imports the same modules on its own worker thread:
Python's import locks let one thread load a module while the other waits for it, and the
loop never waits for either.

The thread is not a daemon: a server stopped during the warm-up exits once the import is
done (a fraction of a second), never with a thread frozen while it holds an import lock.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("kiln.api")
THREAD_NAME = "kiln-warm-up"


def _load() -> None:
    try:
        # start-up: the reason for this module (the server listens before it loads)
        from kiln.ops import build as build_ops

        build_ops.preload()
    except Exception:  # the build that needs it fails with the error, as it did before
        log.debug("loading the build engine in the background failed", exc_info=True)


def start() -> threading.Thread:
    """Load the build engine on a thread of its own; returns the thread."""
    thread = threading.Thread(target=_load, name=THREAD_NAME)
    thread.start()
    return thread


__all__ = ["THREAD_NAME", "start"]
