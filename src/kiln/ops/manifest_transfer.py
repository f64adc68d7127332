"""Moving whole manifest lists: pull every platform of a registry list into the store,
push a stored list (children first, the list last) to a registry or an OCI layout,
and read a list out of an OCI layout (``oci:``/``oci-archive:``) into the store.

The order of a push is what keeps a destination consistent: every child manifest
(with its config and layers) goes up by digest before the list that names it, so a
push that fails part-way leaves at most unreferenced children, never a list naming
something missing. Events follow podman's wording (``Getting image list signatures``,
``Copying N images generated from N images in list``, ``Writing manifest list to
image destination``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import field
from typing import TYPE_CHECKING, Any

from kiln.errors import InvalidArgument, KilnError, NotFound
from kiln.image import copy_image, open_image
from kiln.image.transports import transport
from kiln.oci import Digest, Manifest, Reference
from kiln.oci import media_types as mt
from kiln.oci.strict_json import MAX_MANIFEST_BYTES as MAX_LIST_BYTES
from kiln.oci.strict_json import canonical, loads_object
from kiln.ops import transports as tp
from kiln.ops.registry import (
    _PullEvents,
    _PushEvents,
    pull,
    pull_candidates,
    push_compression,
    registry_client,
)
from kiln.ops.transfer import copy_into_store, normalize_names
from kiln.registry.pull_request import PullRequest
from kiln.store import IndexRecord
from kiln.store.indexes import check_index
from kiln.store.oci_layout import REF_NAME, OCIArchive, OCILayout
from kiln.util.choices import ImageFormat
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from kiln.ops.context import Context
    from kiln.registry import RegistryOptions


def list_media_type(format: str | None, default: str = "") -> str:
    """The media type of a list written in ``format`` (None: ``default``, else OCI)."""
    if format is None:
        return default or mt.OCI_INDEX
    kind = ImageFormat.parse(format)  # podman's v2s2 is docker
    return mt.OCI_INDEX if kind is ImageFormat.OCI else mt.DOCKER_MANIFEST_LIST


@dataclass
class ListPushResult:
    index_id: str
    digest: str  # of the list as pushed
    destination: str
    images: list[str]  # child manifest digests as pushed


@dataclass
class ListPullResult:
    index: IndexRecord | None  # None: the reference named a single image
    digest: str  # of the list (or of the image)
    source: str
    image_ids: list[str] = field(default_factory=list)  # every child, in list order
    names: list[str] = field(default_factory=list)


# -- pull ---------------------------------------------------------------------------------


def pull_list(
    ctx: Context,
    ref: str,
    *,
    name: str | None = "",
    workers: int = 4,
    options: RegistryOptions | None = None,
) -> ListPullResult:
    """Pull ``ref`` with every image its list names and keep the list in the store.

    ``name``: "" names the list as ``ref`` (tag) like a pull; None leaves it unnamed
    (``manifest add --all``); a string names it so. A reference naming one image pulls
    that image, as a plain pull does.
    """
    # the registry's blob code (httpx) is loaded only by a registry transfer: start-up cost
    from kiln.image.registry_source import RemoteImage, pull_into_store

    ref = tp.registry_reference(ref)
    ev = ctx.ev
    with registry_client(ctx, options) as client:
        cands = pull_candidates(client, ref)
        cand = cands[0]
        ev.step(f"Trying to pull {cand}...")
        try:
            raw, media_type, digest = client.get_manifest(cand)
        except KilnError as exc:
            raise type(exc)(f"initializing source docker://{cand}: {exc}") from None
        if not mt.is_index(media_type):
            one = pull(ctx, PullRequest.of(str(cand), options=options))
            return ListPullResult(None, one.manifest_digest, str(cand), list(one.ids), one.names)
        try:
            index = check_index(raw, media_type)  # caps, no nested lists: before any fetch
        except KilnError as exc:
            raise type(exc)(f"{cand}: {exc}") from None
        ev.step("Getting image list signatures")
        ev.step(
            f"Copying {len(index.manifests)} images generated from "
            f"{len(index.manifests)} images in list"
        )
        ids: list[str] = []
        with ctx.store.lease() as lease, _undo_new_images(ctx, ids):
            copied: dict[str, str] = {}  # a digest listed again is copied once
            for i, child in enumerate(index.manifests, 1):
                if str(child.digest) in copied:
                    ids.append(copied[str(child.digest)])
                    continue
                ev.step(f"Copying image {child.digest} ({i}/{len(index.manifests)})")
                child_ref = cand.with_digest(str(child.digest))
                craw, ctype, cdigest = client.get_manifest(child_ref)
                manifest = Manifest.parse(craw, ctype)
                remote = RemoteImage(cand, cdigest, ctype, craw, manifest, None, None, [cdigest])
                rec = pull_into_store(
                    client,
                    remote,
                    ctx.store,
                    (),
                    lease=lease,
                    progress=_PullEvents(ctx),
                    workers=workers,
                )
                ids.append(rec.id)
                copied[str(child.digest)] = rec.id
            names = [f"{cand.name}:{cand.tag}"] if name == "" and cand.tag else []
            if name:
                names = [name]
            ev.step("Writing manifest list to image destination", digest=str(digest))
            stored = _store_list(ctx, raw, media_type, names)
    ev.result(stored.id.removeprefix("sha256:"), id=stored.id, names=names, digest=str(digest))
    return ListPullResult(stored, str(digest), str(cand), ids, names)


def pull_list_from_layout(
    ctx: Context, src: tp.TransportRef, *, name: str | None = ""
) -> ListPullResult:
    """Copy the list an ``oci:``/``oci-archive:`` index.json entry names, with every image
    it names, into the store (an entry naming one image: that image, as a plain pull).
    ``name``: as ``pull_list`` (""': the entry's ref.name if it is a full reference)."""
    layout: Any = (
        OCILayout(src.path) if src.transport == tp.OCI else OCIArchive(src.path, ctx.tmpdir)
    )
    try:
        entry = layout.resolve(src.reference or None)
        names = normalize_names([entry.annotations.get(REF_NAME, "")]) if name == "" else []
        if name:
            names = [name]
        raw = layout.open_blob(entry.digest).read(MAX_LIST_BYTES + 1)
        if len(raw) > MAX_LIST_BYTES:
            raise InvalidArgument(f"{src}: the manifest list is over {MAX_LIST_BYTES} bytes")
        if not mt.is_index(entry.media_type):
            img = open_image(layout, entry)
            with ctx.store.lease() as lease:
                rec = copy_into_store(ctx, img, names, lease, True)
            return ListPullResult(None, rec.manifest_digest, str(src), [rec.id], names)
        try:
            index = check_index(raw, entry.media_type)
        except KilnError as exc:
            raise type(exc)(f"{src}: {exc}") from None
        ids: list[str] = []
        with ctx.store.lease() as lease, _undo_new_images(ctx, ids):
            copied: dict[str, str] = {}  # a digest listed again is copied once
            for i, child in enumerate(index.manifests, 1):
                if str(child.digest) not in copied:
                    ctx.ev.step(f"Copying image {child.digest} ({i}/{len(index.manifests)})")
                    rec = copy_into_store(ctx, open_image(layout, child), [], lease, True)
                    copied[str(child.digest)] = rec.id
                ids.append(copied[str(child.digest)])
            stored = _store_list(ctx, raw, index.media_type, names)
    finally:
        close = getattr(layout, "close", None)
        if close is not None:
            close()
    ctx.ev.result(stored.id.removeprefix("sha256:"), id=stored.id, names=names)
    return ListPullResult(stored, stored.digest, str(src), ids, names)


@contextlib.contextmanager
def _undo_new_images(ctx: Context, ids: list[str]) -> Iterator[None]:
    """If copying a list fails, the images it added (``ids`` not in the store before) are
    forgotten again, so a failed pull leaves no half list behind; GC frees their blobs."""
    before = {r.id for r in ctx.store.list_images()}
    try:
        yield
    except BaseException:
        for image_id in dict.fromkeys(ids):
            if image_id not in before:
                with contextlib.suppress(KilnError):
                    ctx.store.delete_image(image_id)
        raise


def _store_list(ctx: Context, raw: bytes, media_type: str, names: list[str]) -> IndexRecord:
    """Keep ``raw`` as the list ``names[0]`` names (its content replaced), else a new one."""
    existing = None
    if names:
        with contextlib.suppress(NotFound):
            found = ctx.store.resolve(names[0])
            if isinstance(found, IndexRecord) and _named(found, names[0]):
                existing = found
    if existing is not None:
        return ctx.store.put_index(raw, media_type, index_id=existing.id, names=names)
    return ctx.store.put_index(raw, media_type, names=names)


def _named(rec: Any, name: str) -> bool:
    return str(Reference.parse(name)) in rec.names


# -- push ---------------------------------------------------------------------------------


def push_to_registry(
    ctx: Context,
    rec: IndexRecord,
    ref: str,
    *,
    all: bool,
    format: str | None,
    compression: str | None,
    options: RegistryOptions | None,
    workers: int,
) -> ListPushResult:
    from kiln.image.registry_sink import RegistrySink  # httpx: start-up cost, as above

    target = Reference.parse(ref)
    by_digest = Reference(target.domain, target.path, "", "")
    ev = ctx.ev
    with registry_client(ctx, options) as client:

        def push_child(img: Any, image_format: str | None, comp: str | None, as_is: bool) -> Any:
            events = _PushEvents(ctx)
            sink = RegistrySink(
                client,
                by_digest,
                progress=events,
                on_bytes=events.sent,
                tmp_dir=ctx.tmpdir,
                config_digest=img.manifest.config.digest,
            )
            if as_is:
                sink.push_layers(img, workers, config=True)
            return copy_image(
                img,
                sink,
                image_format=image_format,
                compression=comp,
                verify=False,
                tmp_dir=ctx.tmpdir,
            )

        try:
            raw, media_type, pushed = _push_children(ctx, rec, all, format, compression, push_child)
            ev.step("Writing manifest list to image destination")
            digest = client.put_manifest(target, raw, media_type)
        except KilnError as exc:
            hint = ""
            if not all and "manifest blob unknown" in str(exc):
                hint = " (the list's images are not in that repository: push with --all)"
            raise type(exc)(f"pushing manifest list to docker://{target}: {exc}{hint}") from None
    ev.step("Storing list signatures")
    return ListPushResult(rec.id, str(digest), f"docker://{target}", pushed)


def push_to_layout(
    ctx: Context,
    rec: IndexRecord,
    dest: tp.TransportRef,
    *,
    format: str | None,
    compression: str | None,
) -> ListPushResult:
    """Write the list and all its images to ``oci:DIR[:TAG]`` or ``oci-archive:PATH[:TAG]``:
    the list is the index.json entry (named TAG), its images are blobs it points at."""
    names = [dest.reference] if dest.reference else []
    with transport(dest.transport).open_sink(dest.path) as layout:
        blobs_only = _BlobsOnly(layout)

        def push_child(img: Any, image_format: str | None, comp: str | None, as_is: bool) -> Any:
            return copy_image(
                img,
                blobs_only,
                image_format=image_format,
                compression=comp,
                verify=False,
                tmp_dir=ctx.tmpdir,
            )

        raw, media_type, pushed = _push_children(
            ctx, rec, True, format, compression, push_child, registry=False
        )
        ctx.ev.step(f"Writing manifest list to image destination {dest}")
        desc = layout.put_manifest(raw, media_type, names)
    return ListPushResult(rec.id, str(desc.digest), str(dest), pushed)


class _BlobsOnly:
    """A layout as a destination whose manifests become blobs only (no index.json entry):
    the list's children, which the list's own entry points at."""

    def __init__(self, layout: Any):
        self._layout = layout

    def has_blob(self, digest: Any) -> bool:
        return self._layout.has_blob(digest)

    def put_blob(self, desc: Any, stream: Any) -> None:
        self._layout.put_blob(desc, stream)

    def put_manifest(self, raw: bytes, media_type: str, names: Any = ()) -> Any:
        return self._layout.put_bytes(raw, media_type)


def _push_children(
    ctx: Context,
    rec: IndexRecord,
    all: bool,
    format: str | None,
    compression: str | None,
    push_child: Any,
    *,
    registry: bool = True,
) -> tuple[bytes, str, list[str]]:
    """Push each child (if ``all``) with ``push_child``; returns the list document to
    write (the stored bytes when nothing changed), its media type and the child digests."""
    if compression is not None:
        compression = push_compression(compression)
    stored = ctx.store.index_bytes(rec)
    doc = loads_object(stored, what="manifest list")
    entries = [dict(m) for m in doc.get("manifests") or []]
    media_type = list_media_type(format, rec.media_type)
    image_format = None if format is None else ("oci" if media_type == mt.OCI_INDEX else "docker")
    ev = ctx.ev
    ev.step("Getting image list signatures")
    if all:
        ev.step(f"Copying {len(entries)} images generated from {len(entries)} images in list")
    changed = media_type != rec.media_type
    pushed: dict[str, Any] = {}  # a digest listed again is pushed once
    for i, entry in enumerate(entries if all else []):
        res = pushed.get(entry["digest"])
        if res is None:
            ev.step(f"Copying image {entry['digest']} ({i + 1}/{len(entries)})")
            res = _push_one(ctx, entry, image_format, compression, push_child, registry)
            pushed[entry["digest"]] = res
        if str(res.manifest_digest) != entry["digest"]:
            entry.update(
                mediaType=res.manifest.media_type,
                digest=str(res.manifest_digest),
                size=len(res.manifest.raw),
            )
            changed = True
    if changed:
        doc = {**doc, "mediaType": media_type, "manifests": entries}
        if media_type == mt.DOCKER_MANIFEST_LIST:
            doc = _docker_list_fields(ctx, doc)
        return canonical(doc), media_type, [e["digest"] for e in entries]
    return stored, media_type, [e["digest"] for e in entries]


_OCI_ONLY_LIST_FIELDS = ("annotations", "artifactType", "subject")


def _docker_list_fields(ctx: Context, doc: dict) -> dict:
    """``doc`` without the OCI index's own fields a Docker manifest list has no place for
    (as podman converts it; its entries keep theirs, which Docker's descriptors carry)."""
    dropped = [k for k in _OCI_ONLY_LIST_FIELDS if k in doc]
    if dropped:
        ctx.ev.warning(
            f"a Docker manifest list has no {', '.join(dropped)}: the list's are not pushed "
            "(push --format oci keeps them)"
        )
    return {k: v for k, v in doc.items() if k not in _OCI_ONLY_LIST_FIELDS}


def _push_one(
    ctx: Context,
    entry: dict,
    image_format: str | None,
    compression: str | None,
    push_child: Any,
    registry: bool,
) -> Any:
    """Push the image ``entry`` names with ``push_child``, as stored where it can be."""
    img = open_image(ctx.store, Digest.parse(entry["digest"]))
    stored_c = {mt.layer_compression(d.media_type) for d in img.layers}
    # registries get compressed layers, as podman sends them; a layout keeps them as stored
    want_c = compression or ("gzip" if registry and "none" in stored_c else None)
    same_format = image_format is None or mt.manifest_type_for(image_format) == (
        img.manifest.media_type
    )
    as_is = same_format and (want_c is None or stored_c <= {want_c})
    return push_child(img, image_format, None if as_is else want_c, as_is)
