"""``--output``: export the built image besides storing it.

``type=local,dest=DIR`` (its root filesystem as files), ``type=tar,dest=FILE`` (that tree
as one tar), ``type=oci,dest=FILE`` (an OCI archive) and ``type=docker,dest=FILE`` (a
docker-archive). A bare path means ``type=local,dest=PATH``.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from kiln.errors import InvalidArgument

if TYPE_CHECKING:
    from kiln.build.executor import Executor

__all__ = ["export_outputs", "parse_output"]

TYPES = ("local", "tar", "oci", "docker")


def parse_output(spec: str) -> tuple[str, str]:
    """``type=local,dest=DIR`` -> ("local", DIR); a bare path is a local directory."""
    if "=" not in spec:
        return "local", spec
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise InvalidArgument(f"--output {spec!r}: use type=TYPE,dest=PATH")
        fields[key.strip().lower()] = value
    kind = fields.get("type", "local")
    dest = fields.get("dest") or fields.get("destination")
    if kind not in TYPES:
        raise InvalidArgument(f"--output {spec!r}: type must be one of {', '.join(TYPES)}")
    if not dest:
        raise InvalidArgument(f"--output {spec!r}: dest= is required")
    return kind, dest


def export_outputs(ex: Executor, image_id: str, specs: list[str]) -> None:
    for spec in specs:
        kind, dest = parse_output(spec)
        if kind in ("local", "tar"):
            with ex.open_image_root(image_id) as root:
                if kind == "local":
                    os.makedirs(dest, exist_ok=True)
                    shutil.copytree(root, dest, symlinks=True, dirs_exist_ok=True)
                else:
                    _write_tree_tar(root, dest, ex.opts.timestamp)
        else:
            from kiln.image import open_store_image
            from kiln.image.transports import write_docker_archive, write_oci_archive

            img = open_store_image(ex.store, image_id)
            names = list(ex.names)
            writer = write_oci_archive if kind == "oci" else write_docker_archive
            writer(dest, [(img, names)])


def _write_tree_tar(root: str, dest: str, timestamp: int | None) -> None:
    from kiln.archive.compression import Compression
    from kiln.archive.tar_writer import scan_tree, write_layer

    with open(dest, "wb") as out:
        write_layer(scan_tree(root), out, compression=Compression.NONE, timestamp=timestamp)
