"""What the store's GC tells the other things it collects: the sweeper interface.

The store's GC marks, from its roots (names and dangling images, working containers,
live leases, retained build cache), every blob, every layer chain and every active
snapshot something still needs; it sweeps blobs itself and hands the rest to its
sweepers. The snapshotter is one (``kiln.snapshot.Snapshotter.sweep``): store and
snapshot are siblings and never import each other, so the interface is plain values
and ``kiln.ops`` wires the snapshotter in (``Context.collect_garbage``).

A sweeper removes every unpacked layer not in ``keep_layers`` (nor below one, nor below
a kept active snapshot) and every active snapshot not in ``keep_active``, except what is
younger than its own grace period -- which does not protect a layer listed in
``released`` that was created no later than the time given there: the user deleted the
last image using it and asked for the space. It returns ``(removed, bytes_freed)``
(``bytes_freed``: apparent size of what it deleted, as ``du -b`` counts it), and
nothing when ``dry_run`` is set but the same numbers. An interrupted sweep must leave
only garbage the next sweep removes.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Protocol


class Sweeper(Protocol):
    def sweep(
        self,
        keep_layers: Set[str],
        keep_active: Set[str],
        released: Mapping[str, float],
        dry_run: bool = False,
    ) -> tuple[int, int]: ...
