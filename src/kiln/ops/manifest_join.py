"""An image joins a manifest list by name (``kiln commit --manifest``): the list is made if
missing, and an entry of the image's platform is replaced rather than listed twice, as a
``kiln build --manifest`` image joins its list.

Its own module: ``ops.containers`` cannot import ``ops.manifests`` (which reads images
through ``ops.images``, which removes containers through ``ops.containers``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

from kiln.errors import AlreadyExists
from kiln.oci import media_types as mt
from kiln.ops import manifests
from kiln.ops.events import NullSink

if TYPE_CHECKING:
    from kiln.ops.context import Context
    from kiln.store import ImageRecord


def join(ctx: Context, name: str, image: ImageRecord) -> None:
    """Add ``image`` to the list ``name`` (made if new: a Docker manifest list for a
    Docker-format image, else an OCI index), replacing its platform's entry."""
    quiet = dataclasses.replace(ctx, events=NullSink())
    if not manifests.exists(quiet, name):
        fmt = "v2s2" if image.manifest_media_type == mt.DOCKER_MANIFEST else "oci"
        with contextlib.suppress(AlreadyExists):  # made meanwhile: add to it
            manifests.create(quiet, name, [image.id], format=fmt)
            return
    manifests.add(quiet, name, image.id, replace=True)
