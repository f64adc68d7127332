"""``--output``: export the built image besides storing it.

``type=local,dest=DIR`` (its root filesystem as files), ``type=tar,dest=FILE`` (that tree
as one tar), ``type=oci,dest=FILE`` (an OCI archive) and ``type=docker,dest=FILE`` (a
docker-archive). A bare path means ``type=local,dest=PATH``; ``-`` means ``type=tar,dest=-``.

File outputs are written as ``kiln.util.output`` says (a regular file atomically, a
device or FIFO through, never replaced); ``dest=-`` is standard output, as in BuildKit and
buildah, refused when that is a terminal.
"""

from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING, BinaryIO

from kiln.errors import InvalidArgument
from kiln.util.output import check_output, open_output, output_dir

if TYPE_CHECKING:
    from kiln.build.executor import Executor

__all__ = ["check_outputs", "export_outputs", "parse_output", "writes_stdout"]

TYPES = ("local", "tar", "oci", "docker")


def parse_output(spec: str) -> tuple[str, str]:
    """``type=local,dest=DIR`` -> ("local", DIR); a bare path is a local directory, ``-``
    a tar on standard output."""
    if spec == "-":
        return "tar", "-"
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
            if parse_output(spec)[1] == "-":
                return True
        except InvalidArgument:
            continue
    return False


def check_outputs(specs: list[str]) -> None:
    """Refuse bad ``--output`` values before the build starts."""
    for spec in specs:
        kind, dest = parse_output(spec)
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
    return sys.stdout.buffer


def export_outputs(ex: Executor, image_id: str, specs: list[str]) -> None:
    for spec in specs:
        kind, dest = parse_output(spec)
        if kind in ("local", "tar"):
            with ex.open_image_root(image_id) as root:
                if kind == "local":
                    output_dir(dest, "--output type=local")
                    shutil.copytree(root, dest, symlinks=True, dirs_exist_ok=True)
                else:
                    _write_tree_tar(root, dest, spec, ex.opts.timestamp)
        else:
            from kiln.image import open_store_image
            from kiln.image.transports import write_docker_archive, write_oci_archive

            img = open_store_image(ex.store, image_id)
            names = list(ex.names)
            writer = write_oci_archive if kind == "oci" else write_docker_archive
            writer(_stdout(spec) if dest == "-" else dest, [(img, names)])


def _write_tree_tar(root: str, dest: str, spec: str, timestamp: int | None) -> None:
    from kiln.archive.compression import Compression
    from kiln.archive.tar_writer import scan_tree, write_layer

    stdout = _stdout(spec) if dest == "-" else None
    with open_output(dest, stdout=stdout) as out:
        write_layer(scan_tree(root), out.file, compression=Compression.NONE, timestamp=timestamp)
