"""Images join a manifest list by name (``kiln commit --manifest``, ``kiln build
--manifest``): the list is made if missing, and an entry of an image's platform is replaced
rather than listed twice.

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
    from kiln.store import ImageRecord, IndexRecord


def join(ctx: Context, name: str, image_ids: list[str], fmt: str) -> IndexRecord:
    """Add the images to the list ``name`` (made if new, as ``fmt``: "v2s2" a Docker
    manifest list, "oci" an OCI index), replacing entries of the same platforms; returns
    the list. The manifest use cases' own events are not the caller's."""
    quiet = dataclasses.replace(ctx, events=NullSink())
    if not manifests.exists(quiet, name):
        with contextlib.suppress(AlreadyExists):  # made meanwhile: add to it
            return manifests.create(quiet, name, image_ids, format=fmt)
    rec = None
    for image_id in image_ids:
        rec = manifests.add(quiet, name, image_id, replace=True)
    assert rec is not None, "no image to join"
    return rec


def format_of(image: ImageRecord) -> str:
    """The list format an image joins by default: a Docker list for a Docker image."""
    return "v2s2" if image.manifest_media_type == mt.DOCKER_MANIFEST else "oci"
