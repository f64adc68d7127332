"""push and pull between the store and the file transports (oci:, oci-archive:,
docker-archive:, dir:); ``docker://`` is handed to the registry use cases.

Digests are kept: the manifest bytes are copied unchanged whenever no format
or compression change is needed (oci:, oci-archive:, dir:); a docker-archive
stores uncompressed layers, so only the image ID (the config digest) survives
there, as with podman. Pulling registers the image in one transaction under a
lease, after validating it, exactly like ``load``.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kiln.errors import InvalidArgument, KilnError
from kiln.ops import transports as tp

if TYPE_CHECKING:
    from kiln.ops.context import Context
    from kiln.ops.registry import PullResult, PushResult


@dataclass
class TransferResult:
    image_id: str
    manifest_digest: str
    names: list[str] = field(default_factory=list)
    destination: str = ""


def push(
    ctx: Context,
    image: str,
    destination: str | None = None,
    *,
    format: str | None = None,
    compress: bool = False,
    **registry_options: Any,
) -> TransferResult | PushResult:
    """Copy ``image`` from the store to ``destination`` (default: ``docker://IMAGE``).

    ``format``: ``oci`` or ``docker`` to convert the manifest (default: as stored);
    ``v2s1`` (a signed Docker schema 1 manifest) for registries.
    """
    dest = tp.parse_transport(destination or image, default=tp.DOCKER)
    if _is_list(ctx, image):  # a manifest list: kiln.ops.manifests pushes it
        if format == "v2s1":
            raise InvalidArgument(
                f"{image} is a manifest list: Docker schema 1 has no lists; push one of its "
                "images as v2s1, or the list as v2s2 or oci"
            )
        return _push_list(ctx, image, destination, format, registry_options)
    registry_options.pop("all", None)
    if format == "v2s1" and dest.transport != tp.DOCKER:
        raise InvalidArgument(
            f"{dest}: kiln writes Docker schema 1 (v2s1) manifests to registries only "
            "(docker://); use v2s2 or oci here"
        )
    if dest.transport == tp.DOCKER:
        from kiln.ops import registry

        return registry.push(
            ctx, image, dest.reference, format=format, compress=compress, **registry_options
        )
    if dest.transport == tp.STORE:
        raise InvalidArgument(f'"{destination}": push needs a destination transport')
    from kiln.image import copy_image
    from kiln.image import transports as tr
    from kiln.ops.archives import store_items

    [(img, names)] = store_items(ctx, [image])
    compression = "gzip" if compress else None
    opts: dict[str, Any] = {
        "image_format": format,
        "compression": compression,
        "tmp_dir": ctx.tmpdir,
    }
    ctx.ev.step(f"Copying image {img.id.removeprefix('sha256:')[:12]} to {dest}")
    if dest.transport == tp.OCI:
        [res] = tr.write_oci_layout(dest.path, [(img, _oci_names(dest))], **opts)
    elif dest.transport == tp.OCI_ARCHIVE:
        [res] = tr.write_oci_archive(dest.path, [(img, _oci_names(dest))], **opts)
    elif dest.transport == tp.DOCKER_ARCHIVE:
        from kiln.oci import Reference

        tags = [str(Reference.parse(dest.reference))] if dest.reference else names
        opts.pop("compression")
        [res] = tr.write_docker_archive(dest.path, [(img, tags)], **opts)
    else:  # dir:
        from kiln.ops.dir_transport import DirImageDir

        res = copy_image(img, DirImageDir(dest.path, create=True), [], **opts)
    digest = str(res.manifest_digest)
    ctx.ev.step(f"Writing manifest to image destination {dest}", digest=digest)
    from kiln.ops.image_events import record

    record(ctx, "push", str(dest), image)
    return TransferResult(img.id, digest, list(names), str(dest))


def _is_list(ctx: Context, image: str) -> bool:
    from kiln.store import IndexRecord

    try:
        return isinstance(ctx.store.resolve(image), IndexRecord)
    except KilnError:
        return False


def _push_list(
    ctx: Context, image: str, destination: str | None, format: str | None, options: dict
) -> TransferResult:
    """``kiln push LIST``: the list, and with ``all`` its images first (podman push --all)."""
    from kiln.ops import manifests

    fmt = {"docker": "v2s2"}.get(format or "", format)
    kw = {k: v for k, v in options.items() if k not in ("compress",)}
    all_ = bool(kw.pop("all", False))
    res = manifests.push(ctx, image, destination, all=all_, format=fmt, **kw)
    rec = ctx.store.get_index(res.index_id)
    return TransferResult(rec.id, res.digest, list(rec.names), res.destination)


def _oci_names(dest: tp.TransportRef) -> list[str]:
    return [dest.reference] if dest.reference else []


def pull(
    ctx: Context, source: str, *, validate: bool = True, **registry_options: Any
) -> TransferResult | PullResult:
    """Copy the image at ``source`` into the store; a bare name means ``docker://NAME``."""
    src = tp.parse_transport(source, default=tp.DOCKER)
    all_platforms = bool(registry_options.pop("all_platforms", False))
    if all_platforms:  # keep the whole list (kiln.ops.manifest_transfer)
        return _pull_list(ctx, src, registry_options)
    if src.transport == tp.DOCKER:
        from kiln.ops import registry

        return registry.pull(ctx, src.reference, **registry_options)
    from kiln.image import transports as tr
    from kiln.ops.archives import _copy_into_store, normalize_names

    if not os.path.exists(src.path):
        from kiln.errors import NotFound

        raise NotFound(f"{src.path}: no such file or directory")
    with ExitStack() as stack:
        if src.transport == tp.OCI:
            img = tr.open_oci_layout(src.path, src.reference or None)
            names = normalize_names(_ref_name(img, src))
        elif src.transport == tp.OCI_ARCHIVE:
            img = tr.open_oci_archive(src.path, src.reference or None, tmp_dir=ctx.tmpdir)
            names = normalize_names(_ref_name(img, src))
        elif src.transport == tp.DOCKER_ARCHIVE:
            img = tr.open_docker_archive(src.path, src.reference or None, ctx.tmpdir)
            names = normalize_names([src.reference] if src.reference else list(img.names))
        else:
            from kiln.ops.dir_transport import open_dir_image

            img, names = open_dir_image(src.path), []
        close = getattr(img.blobs, "close", None)
        if close is not None:
            stack.callback(close)
        ctx.ev.step(f"Copying image {img.manifest.config.digest.hex[:12]} from {src}")
        with ctx.store.lease() as lease:
            rec = _copy_into_store(ctx, img, names, lease, validate)
    from kiln.ops.image_events import record

    for name in names or [str(src)]:
        record(ctx, "pull", name, name)
    ctx.ev.result(rec.id.removeprefix("sha256:"), id=rec.id, names=names)
    return TransferResult(rec.id, rec.manifest_digest, names, str(src))


def _pull_list(ctx: Context, src: tp.TransportRef, options: dict) -> TransferResult:
    from kiln.ops import manifest_transfer

    if src.transport == tp.DOCKER:
        kw = {k: v for k, v in options.items() if k not in ("policy",)}
        if kw.keys() & {"platform", "arch", "os", "variant", "all_tags"}:
            raise InvalidArgument(
                "--all-platforms cannot be combined with --platform, --arch, --os, --variant "
                "or --all-tags"
            )
        res = manifest_transfer.pull_list(ctx, src.reference, **kw)
    elif src.transport in (tp.OCI, tp.OCI_ARCHIVE):
        res = manifest_transfer.pull_list_from_layout(ctx, src)
    else:
        raise InvalidArgument(
            f"{src}: --all-platforms needs a source that can hold a list "
            "(docker://, oci:, oci-archive:)"
        )
    if res.index is None:
        return TransferResult(res.image_ids[0], res.digest, res.names, res.source)
    return TransferResult(res.index.id, res.digest, res.names, res.source)


def _ref_name(img: Any, src: tp.TransportRef) -> list[str]:
    """An OCI ref.name that is a full reference names the image; a bare tag does not."""
    return [n for n in getattr(img, "names", ()) if n]


# names the curated kiln.__all__ exports
push_image = push
pull_image = pull

__all__ = ["TransferResult", "pull", "pull_image", "push", "push_image"]
