"""``--output``: export the built image besides storing it.

``type=local,dest=DIR`` (its root filesystem as files), ``type=tar,dest=FILE`` (that tree
as one tar), ``type=oci,dest=FILE`` (an OCI archive) and ``type=docker,dest=FILE`` (a
docker-archive). A bare path means ``type=local,dest=PATH``; ``-`` means ``type=tar,dest=-``.
As BuildKit's: ``type=image,name=REF[,push=true]`` names the image REF (``"name=A,B"``:
several) and pushes it when asked; ``type=registry,name=REF`` is ``type=image`` with
``push=true``. ``kiln.ops.build_share`` tags and pushes those (:func:`image_output`).

File outputs are written as ``kiln.util.output`` says (a regular file atomically, a
device or FIFO through, never replaced); ``dest=-`` is standard output, as in BuildKit and
buildah, refused when that is a terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, BinaryIO

from kiln.archive.compression import Compression
from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass
from kiln.util.output import check_output, open_output, output_dir, output_stream, write_error

if TYPE_CHECKING:
    from kiln.image import Image

__all__ = [
    "ImageOutput",
    "check_outputs",
    "export_outputs",
    "image_output",
    "parse_output",
    "writes_stdout",
]

TYPES = ("local", "tar", "oci", "docker", "image", "registry")
IMAGE_TYPES = ("image", "registry")
_IMAGE_KEYS = {"type", "name", "push", "registry.insecure", "oci-mediatypes", "unpack", "store"}


@dataclass(frozen=True)
class ImageOutput:
    """An --output of type image: the names to tag, and whether to push."""

    names: tuple[str, ...]
    push: bool
    insecure: bool = False


def image_output(spec: str) -> ImageOutput | None:
    """``type=image|registry,name=REF[,push=true]`` (BuildKit's CSV: a quoted field may
    hold commas); None for the file outputs."""
    if "=" not in spec:
        return None
    import csv  # start-up: only an --output is parsed with it

    try:
        parts = next(csv.reader([spec]), [])
    except csv.Error as exc:
        raise InvalidArgument(f"--output {spec!r}: {exc}") from None
    fields: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            raise InvalidArgument(f"--output {spec!r}: use type=TYPE,name=REF")
        fields[key.strip().lower()] = value.strip()
    kind = fields.get("type", "local")
    if kind not in IMAGE_TYPES:
        return None
    unknown = sorted(set(fields) - _IMAGE_KEYS)
    if unknown:
        raise InvalidArgument(f"--output {spec!r}: unknown option(s) {', '.join(unknown)}")
    names = tuple(n.strip() for n in fields.get("name", "").split(",") if n.strip())
    if not names:
        raise InvalidArgument(f"--output {spec!r}: name=REF is required")
    flags = {}
    for key in ("push", "registry.insecure"):
        text = fields.get(key, "").lower()
        if text not in ("", "true", "false", "1", "0"):
            raise InvalidArgument(f"--output {spec!r}: {key}={text!r} must be true or false")
        flags[key] = text in ("true", "1")
    return ImageOutput(names, kind == "registry" or flags["push"], flags["registry.insecure"])


def parse_output(spec: str) -> tuple[str, str]:
    """``type=local,dest=DIR`` -> ("local", DIR); a bare path is a local directory, ``-``
    a tar on standard output; ``type=image|registry,name=REF`` -> (type, REF)."""
    if spec == "-":
        return "tar", "-"
    if "=" not in spec:
        return "local", spec
    image = image_output(spec)
    if image is not None:
        return ("registry" if image.push else "image"), ",".join(image.names)
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
    if kind == "local" and dest == "-":
        raise InvalidArgument(
            f"--output {spec!r}: a directory cannot go to standard output: "
            "use type=tar,dest=- or give a directory"
        )
    return kind, dest


def writes_stdout(specs: list[str]) -> bool:
    """Whether one of ``specs`` writes to standard output (progress must go elsewhere);
    a bad spec counts as not (``check_outputs`` refuses it)."""
    for spec in specs:
        try:
            kind, dest = parse_output(spec)
            if dest == "-" and kind not in IMAGE_TYPES:
                return True
        except InvalidArgument:
            continue
    return False


def check_outputs(specs: list[str]) -> None:
    """Refuse bad ``--output`` values before the build starts."""
    for spec in specs:
        kind, dest = parse_output(spec)
        if kind in IMAGE_TYPES:
            continue
        if dest == "-":
            _stdout(spec)
        elif kind != "local":
            check_output(dest)


def _stdout(spec: str) -> BinaryIO:
    if sys.stdout.isatty():
        raise InvalidArgument(
            f"--output {spec!r}: refusing to write a tar to the terminal: redirect standard "
            "output or give dest=FILE"
        )
    sys.stdout.flush()
    return output_stream(sys.stdout.buffer)


def export_outputs(
    specs: list[str],
    image_id: str,
    *,
    open_root: Callable[[str], AbstractContextManager[str]],
    open_image: Callable[[str], Image],
    names: list[str],
    timestamp: int | None,
) -> None:
    """Write the file outputs of ``specs`` for ``image_id``: ``open_root`` mounts an
    image's root filesystem, ``open_image`` reads it from the store; ``names`` go into
    archives."""
    for spec in specs:
        kind, dest = parse_output(spec)
        if kind in IMAGE_TYPES:
            continue  # named and pushed by the caller (kiln.ops.build_share)
        if kind in ("local", "tar"):
            with open_root(image_id) as root:
                if kind == "local":
                    _write_tree(root, dest)
                else:
                    _write_tree_tar(root, dest, spec, timestamp)
        else:
            # lazy: start-up cost, only archive outputs need them
            from kiln.image.transports import write_docker_archive, write_oci_archive

            img = open_image(image_id)
            writer = write_oci_archive if kind == "oci" else write_docker_archive
            writer(_stdout(spec) if dest == "-" else dest, [(img, list(names))])


def _write_tree(root: str, dest: str) -> None:
    """``type=local``: the image's files into directory ``dest`` (replacing what an earlier
    export left, never writing through its links); a failed write names the file."""
    from kiln.snapshot.copytree import copy_tree  # lazy: start-up cost

    output_dir(dest, "--output type=local")
    try:
        copy_tree(root, dest)
    except OSError as exc:
        name = exc.filename
        inside = isinstance(name, str) and name.startswith(os.path.join(dest, ""))
        raise write_error(name if inside else dest, exc) from None


def _write_tree_tar(root: str, dest: str, spec: str, timestamp: int | None) -> None:
    from kiln.archive.tar_writer import scan_tree, write_layer  # lazy: start-up cost

    stdout = _stdout(spec) if dest == "-" else None
    with open_output(dest, stdout=stdout) as out:
        write_layer(scan_tree(root), out.file, compression=Compression.NONE, timestamp=timestamp)
