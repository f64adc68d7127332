"""A layer unpacked before anything vouches for it: applied in ``tmp/``, adopted later.

A pull unpacks each layer while its blob is still arriving, before the blob's digest
is verified and before the image config (which names the layer's diff_id) is known.
So the unpacked tree waits in ``tmp/`` as a :class:`StagedLayer`, where nothing can
use it, until ``Snapshotter.adopt_staged`` has checked its diff_id against the config
and recorded it (not yet durable, marked with the boot id); ``discard`` drops it otherwise. A crash leaves it as
``tmp/`` garbage, which ``gc`` and ``kiln system check --repair`` remove.

A staged layer holds the snapshotter's root lock shared from its creation until it is
adopted or discarded, as an unpack does: no sweep deletes it meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from collections.abc import Callable, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

from kiln.archive.applier import ApplyResult, apply_layer
from kiln.archive.compression import Compression
from kiln.archive.streams import ByteReader
from kiln.errors import DigestMismatch, InvalidArgument


class StagedLayer:
    """One layer's tree being applied (or applied) in ``<root>/tmp/<dir>/fs``."""

    def __init__(self, tmp: str, lock: contextlib.ExitStack):
        self.tmp = tmp
        self.fs = os.path.join(tmp, "fs")
        self.result: ApplyResult | None = None
        self._lock: contextlib.ExitStack | None = lock
        os.mkdir(self.fs, 0o755)

    @property
    def done(self) -> bool:
        """Adopted or discarded: the tree is no longer this object's."""
        return self._lock is None

    def apply(
        self,
        stream: ByteReader,
        *,
        compression: Compression | None = None,
        on_entry: Callable[[tarfile.TarInfo], None] | None = None,
    ) -> ApplyResult:
        """Apply the (possibly compressed) layer tar ``stream``; its diff_id is measured on
        the way (``result``). Big files' writeback starts as they are written. Raises what
        the applier raises (a malformed or hostile tar). ``compression`` and ``on_entry``
        are ``apply_layer``'s (a tar already decompressed; a check of each member)."""
        if self.done:
            raise InvalidArgument("this staged layer was already adopted or discarded")
        self.result = apply_layer(
            stream,
            self.fs,
            whiteouts="overlay",
            start_writeback=True,
            compression=compression,
            on_entry=on_entry,
        )
        return self.result

    def check(self, diff_id: str, what: str) -> None:
        """DigestMismatch unless the applied tar's diff_id is ``diff_id``."""
        if self.result is None:
            raise InvalidArgument(f"layer {what} was not unpacked")
        if str(self.result.diff_id) != str(diff_id):
            raise DigestMismatch(
                f"layer {what} does not match its diff_id: expected {diff_id}, "
                f"the uncompressed content is {self.result.diff_id}",
                expected=str(diff_id),
                actual=str(self.result.diff_id),
            )

    def adopted(self) -> None:
        """The tree was renamed into ``layers/``: release the lock only."""
        self._release()

    def discard(self) -> None:
        """Delete the tree (nothing if already adopted or discarded)."""
        if self.done:
            return
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()

    def __enter__(self) -> StagedLayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def discard_staged(
    staged: MutableMapping[str, StagedLayer], lock: AbstractContextManager[Any] | None = None
) -> None:
    """Drop the trees left in ``staged`` (blob digest -> tree) that no layer took (all of
    them when the copy failed). The mapping is emptied first, under ``lock`` where threads
    still add to it, so each tree is dropped once. The one home of this for every copy
    into the store (a registry pull, a store destination)."""
    with lock if lock is not None else contextlib.nullcontext():
        trees = list(staged.values())
        staged.clear()
    for tree in trees:
        tree.discard()


__all__ = ["StagedLayer", "discard_staged"]
