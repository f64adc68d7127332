"""``GET /system/df`` (Docker) and ``GET /libpod/system/df`` (podman) over kiln.ops.disk_usage.

Docker answers API versions before 1.52 with ``LayersSize``/``Images``/``Containers``/
``Volumes``/``BuildCache`` and later ones with ``ImageUsage``/``ContainerUsage``/
``VolumeUsage``/``BuildCacheUsage`` (items only with ``verbose``); a request without a
version prefix gets both. kiln has no runtime containers or volumes, so those parts are
always empty; its build cache of steps lives in the image store (images), and the build
cache shown is the ``RUN --mount=type=cache`` directories and the build contexts' checksum
indexes (``kiln.ops.disk_usage``), which ``docker builder prune --all`` removes.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiln.errors import InvalidArgument
from kiln.ops.disk_usage import disk_usage
from kiln.util.timefmt import rfc3339

from . import shapes
from .params import docker_bool, qlist
from .versions import version_at_least
from .wiring import run_op

_TYPES = ("container", "image", "volume", "build-cache")


def _empty_usage(verbose: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"ActiveCount": 0, "TotalCount": 0, "Reclaimable": 0, "TotalSize": 0}
    if verbose:
        out["Items"] = []
    return out


def _build_cache_items(usage: Any) -> list[dict[str, Any]]:
    """Docker's ``BuildCache`` records for the cache mount directories of ``usage``."""
    return [
        {
            "ID": c.name,
            "Parent": "",
            "Parents": None,
            "Type": c.kind,
            "Description": c.description,
            "InUse": c.in_use,
            "Shared": False,
            "Size": int(c.size),
            "CreatedAt": rfc3339(c.last_used),  # when first made is not kept
            "LastUsedAt": rfc3339(c.last_used),
            "UsageCount": 0,
        }
        for c in usage.build_cache
    ]


def _build_cache_usage(usage: Any, verbose: bool) -> dict[str, Any]:
    items = usage.build_cache
    out: dict[str, Any] = {
        "ActiveCount": sum(1 for c in items if c.in_use),
        "TotalCount": len(items),
        "Reclaimable": sum(int(c.size) for c in items if not c.in_use),
        "TotalSize": sum(int(c.size) for c in items),
    }
    if verbose:
        out["Items"] = _build_cache_items(usage)
    return out


def df_types(request: Request) -> set[str]:
    types = set(qlist(request.query_params, "type"))
    unknown = sorted(types - set(_TYPES))
    if unknown:
        raise InvalidArgument(
            f'invalid value for query parameter "type": "{unknown[0]}": '
            f"use one of {', '.join(_TYPES)}"
        )
    return types or set(_TYPES)


def docker_df_body(usage: Any, version: str | None, types: set[str], verbose: bool) -> dict:
    """Docker's ``SystemDataUsageResponse`` for ``usage`` (a ``DiskUsage``)."""
    # dockerd counts, sizes and lists the images `docker images` shows, without the
    # intermediate ones (a build's steps); podman's df, and kiln's, every image
    usage = usage.shown()
    items = []
    for i in usage.images:
        item = shapes.docker_summary(i.summary, version, count_containers=True)
        item["SharedSize"] = int(i.shared_size)
        items.append(item)
    body: dict[str, Any] = {}
    if "image" in types:  # every version: docker-py's df() users read it at any version
        body["LayersSize"] = int(usage.layers_size)
    if version is None or not version_at_least(version, "1.52"):
        if "image" in types:
            body["Images"] = items
        if "container" in types:
            body["Containers"] = []
        if "volume" in types:
            body["Volumes"] = []
        if "build-cache" in types:
            body["BuildCache"] = _build_cache_items(usage)
    if version is None or version_at_least(version, "1.52"):
        if "image" in types:
            images: dict[str, Any] = {
                "ActiveCount": usage.active_images,
                "TotalCount": len(usage.images),
                "Reclaimable": int(usage.reclaimable),
                "TotalSize": int(usage.layers_size),
            }
            if verbose:
                images["Items"] = items
            body["ImageUsage"] = images
        if "container" in types:
            body["ContainerUsage"] = _empty_usage(verbose)
        if "volume" in types:
            body["VolumeUsage"] = _empty_usage(verbose)
        if "build-cache" in types:
            body["BuildCacheUsage"] = _build_cache_usage(usage, verbose)
    return body


def libpod_df_body(usage: Any) -> dict[str, Any]:
    """podman 4.3's ``entities.SystemDfReport``."""
    images = []
    for i in usage.images:
        repo, tag = i.summary.repo_tags()[0]
        images.append(
            {
                "Repository": repo,
                "Tag": tag,
                "ImageID": shapes.bare(i.summary.id),
                "Created": i.summary.created,
                "Size": int(i.summary.size),
                "SharedSize": int(i.shared_size),
                "UniqueSize": int(i.unique_size),
                "Containers": int(i.summary.containers),
            }
        )
    return {"ImagesSize": int(usage.layers_size), "Images": images, "Containers": [], "Volumes": []}


async def system_df(request: Request) -> Response:

    q = request.query_params
    verbose = docker_bool(q, "verbose")
    if request.scope.get("kiln.libpod"):
        usage = await run_op(request, disk_usage)
        return JSONResponse(libpod_df_body(usage))
    types = df_types(request)
    usage = await run_op(request, disk_usage)
    version = request.scope.get("kiln.api_version")
    return JSONResponse(docker_df_body(usage, version, types, verbose))


routes = [
    Route("/system/df", system_df, methods=["GET"]),
    Route("/libpod/system/df", system_df, methods=["GET"]),
]

__all__ = ["df_types", "docker_df_body", "libpod_df_body", "routes"]
