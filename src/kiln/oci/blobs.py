"""The small protocols every blob backend speaks (store, registry, archives)."""

from __future__ import annotations

from typing import BinaryIO, Protocol, runtime_checkable

from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest


@runtime_checkable
class BlobSource(Protocol):
    """Reads content by digest."""

    def open_blob(self, digest: Digest) -> BinaryIO:
        """A stream of the blob's bytes; raises kiln.errors.NotFound if absent."""
        ...

    def has_blob(self, digest: Digest) -> bool: ...


@runtime_checkable
class BlobSink(Protocol):
    """Receives content; implementations verify digest and size before keeping it."""

    def has_blob(self, digest: Digest) -> bool: ...

    def put_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        """Store ``stream`` as ``desc``; raises DigestMismatch and keeps nothing on mismatch."""
        ...
