"""What ``manifest add IMAGE`` adds: the list entries an image argument stands for.

An argument is, tried in this order:

- ``containers-storage:NAME`` or a name/ID in the store: a stored image (one entry),
  or a stored list (``all``: every entry; else the entry for the requested platform);
- ``docker://REF``, ``oci:``, ``oci-archive:``, ``docker-archive:``, ``dir:``: the image
  is copied into the store first (unnamed unless the transport names it), so every
  child of a stored list is local; ``docker://`` with ``all`` keeps the whole list
  (what is a transport is ``kiln.ops.transports``' to say);
- any other name not in the store: ``docker://NAME``, as podman does.

Each entry is descriptor JSON whose platform is read from the image's config. The image
picked from a list by ``--arch``/``--os``/``--variant`` follows a pull's rule
(``PullRequest.of``): what is not given is the host's.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from kiln.errors import NotFound
from kiln.image.transports import transport
from kiln.oci import Digest, Index, Platform
from kiln.oci.strict_json import loads_object
from kiln.ops import manifest_transfer, transfer
from kiln.ops import transports as tp
from kiln.ops.events import RESULT
from kiln.ops.images import image_config
from kiln.registry.pull_request import PullRequest, platform_choice
from kiln.store import IndexRecord

if TYPE_CHECKING:
    from kiln.ops.context import Context
    from kiln.ops.events import Event, EventSink
    from kiln.registry import RegistryOptions
    from kiln.store import ImageRecord


def image_entries(
    ctx: Context,
    image: str,
    *,
    all: bool,
    overrides: dict,
    options: RegistryOptions | None = None,
) -> list[dict]:
    value = image.strip()
    local_only = value.startswith("containers-storage:")
    value = value.removeprefix("containers-storage:")
    if not tp.names_transport(value):
        try:
            found = ctx.store.resolve(value)
        except NotFound:
            if local_only:
                raise NotFound(f"{image}: image not known") from None
        else:
            if isinstance(found, IndexRecord):
                return _list_entries(ctx, found, all=all, overrides=overrides)
            return [entry_for_image(ctx, found)]
        value = "docker://" + value
    # what is copied in is a step of the edit: its progress is shown, its ID is not printed.
    # The copy's context shares the caller's snapshotter and scratch, which the caller closes
    ctx = dataclasses.replace(
        ctx,
        events=_WithoutResults(ctx.events),
        _snapshots=ctx.snapshots,
        _scratch=ctx.tmpdir,
        _scratch_finalizer=None,
    )
    if all:
        src = tp.parse_transport(value)
        if src.transport == tp.DOCKER or transport(src.transport).HOLDS_LISTS:
            return _copied_list_entries(ctx, src, options)
    # the platform picks are a registry pull's; a file transport's copy ignores them
    arch, os_name, variant = _picks(overrides)
    request = PullRequest.of(value, arch=arch, os=os_name, variant=variant, options=options)
    result = transfer.pull_image(ctx, request)
    return [entry_for_image(ctx, ctx.store.get_image(result.image_id))]


class _WithoutResults:
    """Every event but results: the one ID ``manifest add``/``create`` print is the list's,
    not those of the images (or the list) they copied in."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    def emit(self, event: Event) -> None:
        if event.kind != RESULT:
            self._sink.emit(event)


def _copied_list_entries(
    ctx: Context, src: tp.TransportRef, options: RegistryOptions | None
) -> list[dict]:
    """Every entry of the list at ``src``, its images copied into the store; the list
    itself is not kept (only the list being edited will name them)."""
    if src.transport == tp.DOCKER:
        res = manifest_transfer.pull_list(ctx, src.reference, name=None, options=options)
    else:
        res = manifest_transfer.pull_list_from_layout(ctx, src, name=None)
    if res.index is None:  # one image, not a list
        return [entry_for_image(ctx, ctx.store.get_image(res.image_ids[0]))]
    try:
        return _list_entries(ctx, res.index, all=True, overrides={})
    finally:
        # the images stay (image rows are GC roots) until the edited list names them
        ctx.store.delete_index(res.index.id)


def entry_for_image(ctx: Context, rec: ImageRecord) -> dict:
    """The list entry for a stored image: its manifest's descriptor, platform from the
    config (as it is spelled there: ``arm64`` + ``v8`` stays so)."""
    config = image_config(ctx, rec)
    platform: dict[str, Any] = {"architecture": config.architecture, "os": config.os}
    if config.variant:
        platform["variant"] = config.variant
    if config.os_version:
        platform["os.version"] = config.os_version
    if config.os_features:
        platform["os.features"] = list(config.os_features)
    return {
        "mediaType": rec.manifest_media_type,
        "digest": rec.manifest_digest,
        "size": ctx.store.blob_size(Digest.parse(rec.manifest_digest)),
        "platform": platform,
    }


def _list_entries(ctx: Context, rec: Any, *, all: bool, overrides: dict) -> list[dict]:
    raw = ctx.store.index_bytes(rec)
    doc = loads_object(raw, what="manifest list")
    entries = [dict(m) for m in doc.get("manifests") or []]
    if all:
        return entries
    chosen = Index.parse(raw, rec.media_type).select(_platform_of(overrides) or Platform.host())
    return [e for e in entries if e.get("digest") == str(chosen.digest)][:1]


def _picks(overrides: dict) -> tuple[str | None, str | None, str | None]:
    """``--arch``, ``--os`` and ``--variant``."""
    return overrides.get("architecture"), overrides.get("os"), overrides.get("variant")


def _platform_of(overrides: dict) -> Platform | None:
    """The platform the picks ask for, by a pull's rule (the rest from the host's; None:
    none asked for)."""
    return platform_choice(None, *_picks(overrides))
