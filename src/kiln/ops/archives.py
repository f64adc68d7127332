"""save, load and import: images to and from tar archives and directories.

Crash safety: ``load`` and ``import`` run under a store lease, blobs are
verified as they go in, and an image (with its names) is registered in one
store transaction only after every blob is present and the image validated.
A load killed half way leaves only unreferenced blobs, ingest files, its lease,
its scratch directory and staged trees in the snapshotter's ``tmp/``; no partial
image is ever visible, and the next load or import (as a build or a prune) first
removes what a killed one left (``sweep_leftovers``), GC the unreferenced blobs.
Both leave the layers of an image for this host's platform unpacked, as a pull
does (``unpack_into``).
Streams (stdin) are spooled to an anonymous temporary file, which vanishes
with the process however it ends; a stream that already is a regular file (an
API upload spooled once, stdin redirected from a file) is read in place.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import field
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from kiln.errors import InvalidArgument, NotFound
from kiln.image import import_tarball
from kiln.image.copy import CountedReads
from kiln.image.transport_names import DIR, DOCKER_ARCHIVE, OCI, OCI_ARCHIVE
from kiln.image.transports import close_source, transport, write_docker_archive, write_images
from kiln.oci import Platform, Reference
from kiln.oci.reference import local_name
from kiln.ops import image_events
from kiln.ops.context import sweep_leftovers
from kiln.ops.events import BlobBytes
from kiln.ops.store_copy import copy_into_store, normalize_names, store_items, unpack_into
from kiln.store.oci_layout import TarIndex
from kiln.util.arguments import as_path, string_list
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from kiln.ops.context import Context
    from kiln.store import ImageRecord

#: the formats save writes and load reads, and the transport of each
FORMAT_TRANSPORTS = {
    "docker-archive": DOCKER_ARCHIVE,
    "oci-archive": OCI_ARCHIVE,
    "oci-dir": OCI,
    "docker-dir": DIR,
}
SAVE_FORMATS = tuple(FORMAT_TRANSPORTS)
_CHUNK = 1 << 20


# --- save ---------------------------------------------------------------------


@dataclass
class SaveResult:
    format: str
    output: str  # path, or "-" for a stream
    image_ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def save(
    ctx: Context,
    images: Sequence[str],
    output: str | os.PathLike[str] | BinaryIO,
    format: str = "docker-archive",
    compress: bool = False,
    dir_as_tar: bool = False,
    name_as: Callable[[str], str] | None = None,
) -> SaveResult:
    """Write ``images`` (names or IDs) to ``output`` (a path, or a binary stream for archives).

    A stream (a pipe, a socket, an HTTP response; no ``seek`` needed) receives the
    archive while it is produced, with the same bytes as a file; nothing is spooled.
    If the save fails midway the stream holds a truncated tar: abandon it.

    ``docker-archive`` stores layers uncompressed (as ``docker save``); ``oci-archive``
    and ``oci-dir`` keep the stored layers, so manifest digests survive; ``docker-dir``
    (and ``oci-dir``) gzip layers only with ``compress``. Image IDs always survive.
    ``dir_as_tar``: a directory format to a stream is the directory's tar, as podman's
    API serves one (an OCI layout's tar is an ``oci-archive``, written as one; a
    ``docker-dir`` is written into the context's scratch directory first).
    ``name_as``: each name as the archive writes it (podman's and ``kiln save``'s are the
    store's, ``docker.io/library/app:1``; the Docker API writes dockerd's ``app:1``).
    """
    if format not in SAVE_FORMATS:
        raise InvalidArgument(f'unknown format "{format}": use one of {", ".join(SAVE_FORMATS)}')
    images, output = string_list(images, "save_images: images"), as_path(output)
    if not images:
        raise InvalidArgument("at least one image name or ID is required")
    # held: another kiln may remove the images and collect while they are written out
    with ctx.store.lease() as lease:
        items = store_items(ctx, images, lease)
        return _save_items(ctx, items, output, format, compress, dir_as_tar, name_as)


def _save_items(
    ctx: Context,
    items: list[tuple[Any, list[str]]],
    output: str | BinaryIO,
    format: str,
    compress: bool,
    dir_as_tar: bool,
    name_as: Callable[[str], str] | None = None,
) -> SaveResult:
    result = SaveResult(format, output if isinstance(output, str) else "-")
    for img, names in items:
        if img.id not in result.image_ids:
            result.image_ids.append(img.id)
        result.names.extend(n for n in names if n not in result.names)
        ctx.ev.step(f"Copying image {img.id.removeprefix('sha256:')[:12]}", image=img.id)
    if name_as is not None:
        items = [(img, [name_as(n) for n in names]) for img, names in items]
    # the store's blobs are content-addressed and their digests are checked as they are
    # written out; re-inflating each layer to re-check its diff_id would be a second pass
    copy_options: dict[str, Any] = {"verify": False, "tmp_dir": ctx.tmpdir,
                                    "on_bytes": BlobBytes(ctx.ev)}  # fmt: skip
    transport_name, target, tar_of = FORMAT_TRANSPORTS[format], output, None
    if format.endswith("-dir"):  # a directory; only these gzip with compress
        if not isinstance(output, str):
            if not dir_as_tar:
                raise InvalidArgument(f"--format {format} writes a directory; give it with -o DIR")
            if format == "oci-dir":
                transport_name = OCI_ARCHIVE
            else:
                target = tar_of = tempfile.mkdtemp(prefix="save-", dir=ctx.tmpdir)
        copy_options["compression"] = "gzip" if compress else None
        if format == "docker-dir":
            if len(items) != 1:
                raise InvalidArgument("--format docker-dir holds exactly one image")
            copy_options["image_format"] = "docker"
    # a stream gets an archive as it is written
    write_images(transport_name, target, items, **copy_options)
    if not isinstance(output, str):
        if tar_of is not None:
            _write_tar_of(tar_of, output)
        output.flush()
    _record_save(ctx, result)
    return result


def _write_tar_of(directory: str, out: BinaryIO) -> None:
    """The files of ``directory`` (a ``dir:`` layout kiln just wrote: regular files, one
    level deep), sorted, owned by root, as one tar stream."""
    import tarfile

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            info = tar.gettarinfo(path, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as f:
                tar.addfile(info, f)


def _record_save(ctx: Context, result: SaveResult) -> None:
    for name in result.names or result.image_ids:
        image_events.record(ctx, "save", name, name)


# --- load ---------------------------------------------------------------------


@dataclass
class LoadedImage:
    id: str
    names: list[str]


@dataclass
class LoadResult:
    images: list[LoadedImage] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        """``Loaded image: NAME`` lines, as podman prints them."""
        out: list[str] = []
        for img in self.images:
            out.extend(f"Loaded image: {n}" for n in img.names)
            if not img.names:
                out.append(f"Loaded image: {img.id}")
        return out


def load(
    ctx: Context,
    source: str | os.PathLike[str] | BinaryIO,
    validate: bool = True,
    *,
    docker_hub: bool = False,
) -> LoadResult:
    """Load every image of a docker-archive or oci-archive (path or stream) or an OCI/dir directory.

    The format is detected from the content. Names come from the archive
    (RepoTags, or ``org.opencontainers.image.ref.name`` when it is a full reference); a
    short one goes under ``localhost/`` as podman loads it, or on Docker Hub with
    ``docker_hub``, as dockerd does (``normalize_names``).
    What a killed load or import left (its lease, spooled input, unpack work) goes first.
    """
    result, source = LoadResult(), as_path(source)
    sweep_leftovers(ctx)
    with ExitStack() as stack:
        path = stack.enter_context(_local_path(ctx, source))
        sources = _open_sources(ctx, path, stack, _shown(source), docker_hub)
        if not sources:
            raise InvalidArgument(f"{_shown(source)}: the archive holds no images")
        with ctx.store.lease() as lease:
            for img, names in sources:
                ctx.ev.step(
                    f"Loading image {img.manifest.config.digest.hex[:12]}", names=list(names)
                )
                rec = copy_into_store(ctx, img, names, lease, validate)
                result.images.append(LoadedImage(rec.id, list(names)))
    for img in result.images:
        image_events.record(ctx, "load", img.id, img.names[0] if img.names else "")
        for name in img.names or [img.id]:
            ctx.ev.result(f"Loaded image: {name}", id=img.id, name=name)
    return result


def detect_format(path: str, tmp_dir: str | None = None, shown: str | None = None) -> str:
    """``docker-archive``, ``oci-archive``, ``oci-dir`` or ``docker-dir`` (``dir:``).

    ``shown`` names the input in errors (``stdin`` for a spooled stream).
    """
    shown = shown or path
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "oci-layout")):
            return "oci-dir"
        if os.path.isfile(os.path.join(path, "manifest.json")):
            return "docker-dir"
        raise InvalidArgument(f"{path}: neither an OCI layout nor a dir: image directory")

    try:
        index = TarIndex(path, tmp_dir)
    except InvalidArgument as exc:
        if shown == path:
            raise
        raise InvalidArgument(str(exc).replace(path, shown)) from None
    except Exception as exc:  # tarfile.ReadError and friends
        raise InvalidArgument(
            f"{shown}: not a docker-archive or oci-archive tar file ({exc})"
        ) from None
    try:
        if index.has("manifest.json"):
            return "docker-archive"
        if index.has("index.json") and index.has("oci-layout"):
            return "oci-archive"
    finally:
        index.close()
    raise InvalidArgument(
        f"{shown}: not a docker-archive (no manifest.json) or oci-archive (no index.json)"
    )


def _open_sources(
    ctx: Context, path: str, stack: ExitStack, shown: str, docker_hub: bool
) -> list[tuple[Any, list[str]]]:
    kind = detect_format(path, ctx.tmpdir, shown)
    try:
        images = transport(FORMAT_TRANSPORTS[kind]).all_images(path, tmp_dir=ctx.tmpdir)
    except InvalidArgument as exc:  # a spooled stream's errors name it as the user does
        if shown == path:
            raise
        raise InvalidArgument(str(exc).replace(path, shown)) from None
    for img in images:
        stack.callback(close_source, img)
    merged: dict[str, tuple[Any, list[str]]] = {}  # one entry per manifest, names joined
    for img in images:
        key = str(img.manifest.digest)
        names = normalize_names(img.names, docker_hub=docker_hub)
        if key in merged:
            merged[key][1].extend(n for n in names if n not in merged[key][1])
        else:
            merged[key] = (img, names)
    return list(merged.values())


@contextmanager
def _local_path(ctx: Context, source: str | BinaryIO) -> Iterator[str]:
    """A path to read ``source`` from; streams are spooled to an anonymous temp file."""
    if isinstance(source, str):
        if not os.path.exists(source):
            raise NotFound(f"{source}: no such file or directory")
        yield source
        return
    whole = _whole_file(source)
    if whole is not None:  # already a file on disk (a spooled upload, stdin < file): no copy
        if whole == 0:
            raise InvalidArgument("no archive data on standard input")
        yield f"/proc/self/fd/{source.fileno()}"
        return
    os.makedirs(ctx.tmpdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=ctx.tmpdir, prefix="kiln-load-") as spool:
        total = 0
        while chunk := source.read(_CHUNK):
            spool.write(chunk)
            total += len(chunk)
            ctx.ev.progress("stdin", total, None, "Reading archive")
        spool.flush()
        if total == 0:
            raise InvalidArgument("no archive data on standard input")
        yield f"/proc/self/fd/{spool.fileno()}"


def _whole_file(source: BinaryIO) -> int | None:
    """The size of ``source`` if it is a regular file read from its start, else None."""
    try:
        st = os.fstat(source.fileno())
        at_start = source.tell() == 0
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) and at_start else None


def _shown(source: str | BinaryIO) -> str:
    return source if isinstance(source, str) else "stdin"


# --- import -------------------------------------------------------------------


def import_image(
    ctx: Context,
    source: str | os.PathLike[str] | BinaryIO,
    reference: str | None = None,
    changes: Sequence[str] = (),
    message: str = "",
    platform: str | None = None,
    path_env: bool = False,
    podman_history: bool = True,
) -> ImageRecord:
    """Make a one-layer image of a root filesystem tarball (path, URL, ``-``/stream).
    What a killed import or load left (its lease, unpack work) goes first.

    The defaults make the image ``podman import`` makes (the CLI, libpod's and varlink's
    routes): no environment (``path_env``: start it with ``PATH``) and podman's history
    entry (``ADD file:<diff id> in /``, "imported from tarball"); the Docker route asks
    for dockerd's entry with ``podman_history=False`` (see ``kiln.image.import_tarball``)."""
    names, source = [], as_path(source)
    if reference:
        ref = Reference.parse(local_name(reference))
        if ref.digest:
            raise InvalidArgument(f'"{reference}": an image name cannot contain a digest')
        names.append(str(ref))
    plat = Platform.parse(platform) if platform else None
    sweep_leftovers(ctx)
    with ExitStack() as stack:
        stream, shown = _open_tarball(source, stack)
        ctx.ev.step(f"Importing {shown}")
        stream = _counted(ctx, stream, shown)
        with ctx.store.lease() as lease:
            rec = import_tarball(
                ctx.store,
                stream,
                list(changes),
                message,
                source=shown,
                platform=plat,
                image_format=ctx.config.image_format,
                names=names,
                lease=lease,
                snaps=unpack_into(ctx, plat),
                path_env=path_env,
                podman_history=podman_history,
            )
    image_events.record(ctx, "import", rec.id, names[0] if names else "")
    ctx.ev.result(rec.id, id=rec.id, names=names)
    return rec


def _open_tarball(source: str | BinaryIO, stack: ExitStack) -> tuple[BinaryIO, str]:
    if not isinstance(source, str):
        return source, "-"
    if source == "-":
        return sys.stdin.buffer, "-"
    if source.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            resp = urllib.request.urlopen(source, timeout=60)  # noqa: S310 - user's URL
        except (urllib.error.URLError, OSError) as exc:
            raise NotFound(f"{source}: cannot download the tarball: {exc}") from None
        return stack.enter_context(resp), source
    try:
        return stack.enter_context(open(source, "rb")), source
    except FileNotFoundError:
        raise NotFound(f"{source}: no such file") from None
    except IsADirectoryError:
        raise InvalidArgument(f"{source}: is a directory; give a tarball") from None


def _counted(ctx: Context, stream: BinaryIO, shown: str) -> BinaryIO:
    """``stream`` reporting how much of it has been read (of its size, for a file)."""
    progress, total = BlobBytes(ctx.ev), _whole_file(stream)
    on_read = lambda n: progress.report(shown, n, total, f"Importing {shown}")  # noqa: E731
    return cast(BinaryIO, CountedReads(stream, on_read))


# names the curated kiln.__all__ exports
save_images = save
load_images = load


def save_with_names(ctx: Context, name: str, path: str, extra_tags: Sequence[str]) -> None:
    """Write image ``name`` as a docker-archive at ``path`` under its names plus
    ``extra_tags`` (normalised as ``kiln tag`` stores them, so a load gives them back)."""
    more = [str(Reference.parse(local_name(t))) for t in extra_tags]
    with ctx.store.lease() as lease:
        [(img, names)] = store_items(ctx, [name], lease)
        items = [(img, list(dict.fromkeys([*names, *more])))]
        write_docker_archive(path, items, tmp_dir=ctx.tmpdir)


__all__ = [
    "FORMAT_TRANSPORTS",
    "save_with_names",
    "SAVE_FORMATS",
    "LoadResult",
    "LoadedImage",
    "SaveResult",
    "detect_format",
    "import_image",
    "load",
    "load_images",
    "normalize_names",
    "save",
    "save_images",
    "store_items",
]
