"""Remove the working containers of builds whose kiln process was killed.

A build marks each container it makes with its owner (``ContainerState.owner``); a user's
own working containers (``kiln from``) have none and are never touched. Once the owner is
dead, nothing will use or remove the container: ``sweep_dead_builds`` does, unmounting it and
dropping its snapshot, so its space comes back and GC no longer holds its base image.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from kiln.errors import KilnError
from kiln.util.process_owner import is_alive

__all__ = ["sweep_dead_builds"]


def sweep_dead_builds(store: Any, snapshots: Callable[[], Any], dry_run: bool = False) -> list[str]:
    """Delete the containers of dead builds; returns their IDs (with ``dry_run``, only finds
    them). ``snapshots()`` gives the snapshotter, asked for only when there is something to
    remove."""
    swept = []
    for rec in store.list_containers():
        owner = _owner(rec.state)
        if not owner or is_alive(owner):
            continue
        if dry_run:
            swept.append(rec.id)
            continue
        from .builder import Builder  # start-up: only a dead build's container is loaded

        with contextlib.suppress(KilnError):
            Builder.load(store, rec.id, snapshots=snapshots()).delete()
            swept.append(rec.id)
    return swept


def _owner(state: Any) -> str:
    return str(state.get("owner") or "") if isinstance(state, dict) else ""
