"""Manifest lists (OCI image indexes and Docker manifest lists) as podman's
``manifest`` commands use them, and the library API a multi-platform build calls.

    create(ctx, "app:1", ["sha256:<amd64 id>", "sha256:<arm64 id>"])   # a named list
    add(ctx, "app:1", "sha256:<riscv64 id>", replace=True)           # one more platform
    push(ctx, "app:1", "docker://registry.example/app:1")           # children first, then list

A list is a record of the store (``kiln.store.indexes``) whose children are all in
the store. Adding takes an image by name or ID from the store, or from a transport
(``docker://``, ``oci:``, ``oci-archive:``, ``docker-archive:``; a bare name not in
the store is tried as ``docker://`` as podman does); its platform comes from the
image's config unless ``arch``/``os``/``variant``/``os_version``/``features``/
``os_features`` override it. Every edit writes a new document and swaps it in only
if nobody changed the list meanwhile (else it is re-read and the edit applied again),
so two concurrent ``add``s both land and an interrupted edit leaves the old list.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kiln.errors import AlreadyExists, Conflict, InvalidArgument, KilnError, NotFound
from kiln.oci import Index, Reference
from kiln.oci.reference import local_name
from kiln.oci.strict_json import canonical, loads_object
from kiln.store.images import normalise_name
from kiln.util.arguments import string_list
from kiln.util.exports import lazy_exports

if TYPE_CHECKING:
    from kiln.ops.context import Context
    from kiln.ops.manifest_transfer import ListPushResult
    from kiln.registry import RegistryOptions
    from kiln.store import ImageRecord, IndexRecord

_STORE_PREFIXES = ("containers-storage:",)
_RETRIES = 64  # compare-and-swap attempts of one edit (parallel platform builds)


# -- reading ----------------------------------------------------------------------------------


def exists(ctx: Context, name: str, *, strict: bool = False) -> bool:
    """True if ``name`` (name, ID or ID prefix) is a manifest list in the store.

    ``strict`` (``kiln manifest exists``, as podman's): an image's name or a name that is
    no reference is an error (``InvalidArgument``, exit 125), not just "no" (exit 1)."""
    try:
        get(ctx, name) if strict else ctx.store.resolve_index(name)
    except NotFound:
        if strict:
            _check_reference(name)
        return False
    except InvalidArgument:
        if strict:
            raise
        return False
    return True


def get(ctx: Context, name: str) -> IndexRecord:
    """The stored list ``name`` names: ``NotFound`` if none, ``InvalidArgument`` if the
    name is an image's (podman's "image is not a manifest list")."""
    try:
        return ctx.store.resolve_index(name)
    except NotFound:
        image = None
        with contextlib.suppress(NotFound, InvalidArgument):
            image = ctx.store.resolve_image(name)
        if image is not None:
            raise InvalidArgument(f"{name}: image is not a manifest list") from None
        raise


def _check_reference(name: str) -> None:
    """``InvalidArgument`` unless ``name`` could name a list (a reference, an ID or an ID
    prefix)."""
    bare = name.strip().removeprefix("sha256:")
    if bare and all(c in "0123456789abcdef" for c in bare):
        return
    try:
        Reference.parse(name.strip())
    except KilnError as exc:  # its message says "invalid reference format" and why
        raise InvalidArgument(str(exc)) from None


def document(ctx: Context, name: str) -> Index:
    """The list's current document, parsed."""
    rec = get(ctx, name)
    return Index.parse(ctx.store.index_bytes(rec), rec.media_type)


def inspect(ctx: Context, name: str, *, options: RegistryOptions | None = None) -> dict[str, Any]:
    """What ``podman manifest inspect`` prints: the list document as JSON.

    A local list first; otherwise ``name`` (``docker://`` optional) is read from its
    registry, as podman does, and the document found there (list or image) is returned.
    """
    try:
        rec = ctx.store.resolve_index(name.removeprefix("containers-storage:"))
    except NotFound:
        rec = None
    if rec is not None:
        return podman_order(json.loads(ctx.store.index_bytes(rec)))
    if not name.startswith("docker://"):
        image = None
        with contextlib.suppress(NotFound, InvalidArgument):
            image = ctx.store.resolve_image(name)
        if image is not None:
            raise InvalidArgument(f"{name} is an image, not a manifest list")
    return _remote_document(ctx, name, options)


_TOP_ORDER = ("schemaVersion", "mediaType", "artifactType", "config", "manifests", "layers")
_ENTRY_ORDER = ("mediaType", "size", "digest", "platform", "annotations")
# Go's field order of a platform (image-spec's and containers/image's), as podman prints it
_PLATFORM_ORDER = ("architecture", "os", "os.version", "os.features", "variant", "features")


def podman_order(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its keys in the order podman prints them (stored canonically)."""

    def ordered(obj: dict, first: tuple[str, ...]) -> dict:
        return {**{k: obj[k] for k in first if k in obj}, **obj}

    def entry(m: dict) -> dict:
        out = ordered(m, _ENTRY_ORDER)
        if isinstance(out.get("platform"), dict):
            out["platform"] = ordered(out["platform"], _PLATFORM_ORDER)
        return out

    out = ordered(doc, _TOP_ORDER)
    if isinstance(out.get("manifests"), list):
        out["manifests"] = [entry(m) if isinstance(m, dict) else m for m in out["manifests"]]
    return out


def _remote_document(ctx: Context, name: str, options: RegistryOptions | None) -> dict[str, Any]:
    """The document ``name`` names in its registry; a short name (without ``docker://``)
    resolved by registries.conf, as podman's manifest inspect does (it went to docker.io)."""
    from kiln.ops import transports as tp  # start-up: as in inspect
    from kiln.ops.registry import pull_candidates, registry_client  # start-up: as in inspect

    with registry_client(ctx, options) as client:
        if name.startswith("docker://"):
            cands = [Reference.parse(tp.registry_reference(name))]
        else:
            cands = pull_candidates(client, name)
        for i, ref in enumerate(cands):
            try:
                raw, _media_type, _digest = client.get_manifest(ref)
                break
            except NotFound:
                if i == len(cands) - 1:
                    raise
    return podman_order(loads_object(raw, what="manifest"))


# -- creating and editing -----------------------------------------------------------------------


def create(
    ctx: Context,
    name: str,
    images: Sequence[str] = (),
    *,
    all: bool = False,
    amend: bool = False,
    format: str | None = None,
    annotations: Mapping[str, str] | None = None,
    options: RegistryOptions | None = None,
) -> IndexRecord:
    """A new list named ``name`` holding ``images`` (see ``add`` for what an image may be).

    ``amend``: if a list has the name already, add to it instead of failing.
    ``format``: ``oci`` (an OCI image index, the default) or ``v2s2`` (a Docker manifest
    list). ``annotations``: the list's own. Nothing is stored unless every image is added.
    """
    images = string_list(images, "create_manifest_list: images")
    name = normalise_name(local_name(name))  # podman's localhost/ for short names
    existing = _existing(ctx, name)
    if existing is not None:
        if not amend:
            raise AlreadyExists(
                f'creating manifest list: image name "{_shown(existing)}" is already associated '
                f'with image "{existing.id.removeprefix("sha256:")}": that name is already in use'
            )
        if not hasattr(existing, "digest"):
            raise Conflict(f"{name} is an image, not a manifest list; --amend needs a list")
    children: list[dict] = []
    for image in images:
        for entry in _entries_for(ctx, image, all=all, overrides={}, options=options):
            children = _merged(children, entry, replace=False)
    if existing is not None:
        out = _add_entries(ctx, existing.id, children, replace=False)
        ctx.ev.result(out.id.removeprefix("sha256:"), id=out.id, names=out.names)
        return out
    from kiln.ops.manifest_transfer import list_media_type  # start-up: as in push

    media_type = list_media_type(format)
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": children}
    if annotations:
        doc["annotations"] = dict(annotations)
    try:
        rec = ctx.store.put_index(canonical(doc), media_type, names=[name], claim_names=True)
    except AlreadyExists as exc:  # another create of this name won the race
        raise AlreadyExists(f"creating manifest list: {exc}") from None
    ctx.ev.result(rec.id.removeprefix("sha256:"), id=rec.id, names=rec.names)
    return rec


def add(
    ctx: Context,
    list_name: str,
    image: str,
    *,
    all: bool = False,
    arch: str | None = None,
    os: str | None = None,
    variant: str | None = None,
    os_version: str | None = None,
    features: Sequence[str] = (),
    os_features: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    replace: bool = False,
    options: RegistryOptions | None = None,
) -> IndexRecord:
    """Add ``image`` (name, ID, ``name@digest`` or ``transport:ref``) to the list.

    ``all``: when ``image`` is itself a list, add every image it names (else the one for
    the host's platform, or for ``arch``/``os``/``variant`` when given). The platform
    fields default to the image config's. An image already in the list is updated, not
    added twice; ``replace`` also drops entries for the same platform (a rebuild).
    """
    rec = get(ctx, list_name)
    overrides = _overrides(arch, os, variant, os_version, features, os_features, annotations)
    entries = _entries_for(ctx, image, all=all, overrides=overrides, options=options)
    out = _add_entries(ctx, rec.id, entries, replace=replace)
    ctx.ev.result(out.id.removeprefix("sha256:"), id=out.id, digest=out.digest)
    return out


def _overrides(
    arch: str | None,
    os: str | None,
    variant: str | None,
    os_version: str | None,
    features: Sequence[str],
    os_features: Sequence[str],
    annotations: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The entry fields ``add`` and ``annotate`` set over the image's own (None: keep it)."""
    return {
        "architecture": arch,
        "os": os,
        "variant": variant,
        "os_version": os_version,
        "features": tuple(features),
        "os_features": tuple(os_features),
        "annotations": dict(annotations or {}),
    }


def _add_entries(ctx: Context, list_id: str, entries: list, *, replace: bool) -> IndexRecord:
    """Merge ``entries`` into the list (an image already in it is updated, not doubled)."""

    def change(doc: dict) -> dict:
        for entry in entries:
            doc["manifests"] = _merged(doc["manifests"], entry, replace=replace)
        return doc

    return _edit(ctx, list_id, change)


def annotate(
    ctx: Context,
    list_name: str,
    image: str | None,
    *,
    arch: str | None = None,
    os: str | None = None,
    variant: str | None = None,
    os_version: str | None = None,
    features: Sequence[str] = (),
    os_features: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    index_annotations: Mapping[str, str] | None = None,
) -> IndexRecord:
    """Change the platform fields or annotations of one entry (a digest in the list, or an
    image in the store the list holds); ``index_annotations`` set the list's own (``image``
    None: only those)."""
    rec = get(ctx, list_name)
    digest = _entry_digest(ctx, rec, image) if image else None
    if digest is None and (
        arch or os or variant or os_version or features or os_features or annotations
    ):
        raise InvalidArgument("name the entry to change: give IMAGE (a digest in the list)")
    overrides = _overrides(arch, os, variant, os_version, features, os_features, annotations)

    def change(doc: dict) -> dict:
        doc["manifests"] = [
            _overridden(m, overrides) if m.get("digest") == digest else m for m in doc["manifests"]
        ]
        if index_annotations:
            doc["annotations"] = {**(doc.get("annotations") or {}), **dict(index_annotations)}
        return doc

    out = _edit(ctx, rec.id, change)
    ctx.ev.result(out.id.removeprefix("sha256:"), id=out.id, digest=out.digest)
    return out


def remove(ctx: Context, list_name: str, digest: str) -> IndexRecord:
    """Drop the entry with manifest ``digest`` (``NotFound`` if the list has none)."""
    rec = get(ctx, list_name)
    wanted = _entry_digest(ctx, rec, digest)

    def change(doc: dict) -> dict:
        doc["manifests"] = [m for m in doc["manifests"] if m.get("digest") != wanted]
        return doc

    out = _edit(ctx, rec.id, change)
    ctx.ev.result(out.id.removeprefix("sha256:"), id=out.id, digest=out.digest)
    return out


def rm(ctx: Context, *names: str) -> list[tuple[list[str], str]]:
    """Remove lists (their images stay); returns (names untagged, list ID) for each.
    Every name is tried; the first error is raised after the others were removed."""
    done: list[tuple[list[str], str]] = []
    errors: list[KilnError] = []
    for name in names:
        try:
            rec = get(ctx, name)
        except NotFound:
            errors.append(NotFound(f"{name}: image not known"))
            continue
        except InvalidArgument as exc:
            errors.append(exc)
            continue
        ctx.store.delete_index(rec.id)
        done.append((list(rec.names), rec.id))
    if errors:
        raise errors[0]
    return done


# -- pushing --------------------------------------------------------------------------------


def push(
    ctx: Context,
    list_name: str,
    destination: str | None = None,
    *,
    all: bool = True,
    format: str | None = None,
    compression: str | None = None,
    digestfile: str | None = None,
    rm: bool = False,
    options: RegistryOptions | None = None,
    workers: int = 4,
) -> ListPushResult:
    """Push a list to ``destination`` (default: its name): with ``all``, every image it
    names first (by digest), then the list, so a push that fails part-way never leaves a
    list naming missing images. ``format`` converts the list (and its images) to ``oci``
    or ``v2s2``; without it the stored documents go up byte for byte (same digests).
    Destinations: ``docker://`` (the default), ``oci:DIR[:TAG]``, ``oci-archive:PATH[:TAG]``;
    ``docker-archive:`` cannot hold a list and is refused.
    """
    # start-up: reading a list (kiln inspect, manifest exists) needs none of the transfer code
    from kiln.image.transports import transport
    from kiln.ops import transports as tp
    from kiln.ops.manifest_transfer import push_to_layout, push_to_registry
    from kiln.util.output import check_output, write_output  # start-up: as above

    if digestfile:
        check_output(digestfile)
    rec = get(ctx, list_name)
    target = destination or (rec.names[0] if rec.names else "")
    if not target:
        raise InvalidArgument(f"{list_name}: the list has no name; give a destination")
    dest = tp.parse_transport(target, default=tp.DOCKER)
    if dest.transport == tp.DOCKER:
        result = push_to_registry(
            ctx,
            rec,
            dest.reference,
            all=all,
            format=format,
            compression=compression,
            options=options,
            workers=workers,
        )
    elif dest.is_file and transport(dest.transport).HOLDS_LISTS:
        result = push_to_layout(ctx, rec, dest, format=format, compression=compression)
    elif dest.transport == tp.DOCKER_ARCHIVE:
        raise InvalidArgument(
            "docker-archive: cannot hold a manifest list; push one image of it "
            "(kiln push IMAGE docker-archive:PATH) or use oci-archive:"
        )
    else:
        raise InvalidArgument(
            f"{target}: a manifest list can be pushed to docker://, oci: or oci-archive:"
        )
    if digestfile:
        write_output(digestfile, result.digest.encode())
    if rm:
        ctx.store.delete_index(rec.id)
    return result


# -- helpers ----------------------------------------------------------------------------------


def _existing(ctx: Context, name: str) -> ImageRecord | IndexRecord | None:
    norm = str(Reference.parse(name))
    try:
        found = ctx.store.resolve(name)
    except NotFound:
        return None
    # an ID prefix that happens to equal the name is not the name
    if norm in found.names or any(n.endswith("/" + name) for n in found.names):
        return found
    return found if name in found.names else None


def _shown(rec: Any) -> str:
    return rec.names[0] if rec.names else rec.id


def _edit(ctx: Context, index_id: str, change: Any) -> IndexRecord:
    """Apply ``change`` (the document as a dict -> the new one) to the list's current
    document and store the result; again from the new current document if someone else
    changed the list meanwhile. Entries are edited as JSON, so fields kiln does not model
    (and spellings such as variant ``v8``) survive."""
    for _ in range(_RETRIES):
        rec = ctx.store.get_index(index_id)
        doc = loads_object(ctx.store.index_bytes(rec), what="manifest list")
        doc["manifests"] = list(doc.get("manifests") or [])
        new = change(doc)
        try:
            return ctx.store.put_index(
                canonical(new), rec.media_type, index_id=rec.id, expect_digest=rec.digest
            )
        except Conflict:
            time.sleep(random.uniform(0, 0.02))  # let the other writer finish
            continue
    raise Conflict(f"manifest list {index_id} kept changing while being edited; try again")


def _merged(children: list[dict], entry: dict, replace: bool) -> list[dict]:
    """``children`` with ``entry`` in: in place of the same digest, else (``replace``) of
    the same platform, else appended."""
    out, placed = [], False
    for m in children:
        same = m.get("digest") == entry["digest"] or (
            replace and entry.get("platform") and m.get("platform") == entry.get("platform")
        )
        if same:
            if not placed:
                notes = {**(m.get("annotations") or {}), **(entry.get("annotations") or {})}
                out.append({**entry, "annotations": notes} if notes else entry)
                placed = True
            continue
        out.append(m)
    if not placed:
        out.append(entry)
    return out


def _entry_digest(ctx: Context, rec: IndexRecord, image: str) -> str:
    """The digest of the list entry ``image`` names: a digest in it, or a stored image's."""
    value = image.strip()
    bare = value.removeprefix("sha256:")
    for digest in rec.manifests:
        if digest == value or digest == "sha256:" + bare:
            return digest
    with contextlib.suppress(NotFound, InvalidArgument):
        img = ctx.store.resolve_image(value)
        if img.manifest_digest in rec.manifests:
            return img.manifest_digest
    raise NotFound(f"{image}: no such image in manifest list {_shown(rec)}")


def _entries_for(
    ctx: Context, image: str, *, all: bool, overrides: dict, options: RegistryOptions | None
) -> list[dict]:
    """The list entries (descriptor JSON) ``image`` stands for, platform overridden."""
    from kiln.ops.manifest_sources import image_entries  # start-up: as in push

    entries = image_entries(ctx, image, all=all, overrides=overrides, options=options)
    return [_overridden(e, overrides) for e in entries]


_PLATFORM_KEYS = (
    ("architecture", "architecture"),
    ("os", "os"),
    ("variant", "variant"),
    ("os_version", "os.version"),
    ("os_features", "os.features"),
    ("features", "features"),
)


def _overridden(entry: dict, overrides: Mapping[str, Any]) -> dict:
    """``entry`` with the platform fields and annotations ``overrides`` give."""
    out = dict(entry)
    plat = dict(out.get("platform") or {})
    for key, field_name in _PLATFORM_KEYS:
        value = overrides.get(key)
        if value:
            plat[field_name] = list(value) if isinstance(value, (tuple, list)) else value
    if plat:
        plat.setdefault("architecture", "")
        plat.setdefault("os", "")
        out["platform"] = plat
    notes = dict(overrides.get("annotations") or {})
    if notes:
        out["annotations"] = {**(out.get("annotations") or {}), **notes}
    return out


__all__ = [
    "ListPushResult",
    "add",
    "annotate",
    "create",
    "document",
    "exists",
    "get",
    "inspect",
    "push",
    "remove",
    "rm",
]

# ListPushResult is push's answer: its module is imported when the name is first asked for
__getattr__, __dir__ = lazy_exports(__name__, {"ListPushResult": "kiln.ops.manifest_transfer"})
