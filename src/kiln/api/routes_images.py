"""Docker image routes over :mod:`kiln.ops.images`: list, inspect, history, tag, remove, prune."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiln.errors import InvalidArgument, NotFound
from kiln.oci import Reference
from kiln.ops import images as ops
from kiln.ops.context import Context

from . import reference_filter, shapes
from .errors import NoSuchImage, image_lookup
from .listing_cache import listing_response
from .params import docker_bool, qfilters, qstr
from .wiring import run_op, run_read

# Docker filter names -> kiln's (podman's) names
_FILTER_ALIASES = {
    "reference": "reference",
    "dangling": "dangling",
    "label": "label",
    "label!": "label!",
    "before": "before",
    "since": "since",
    "until": "until",
}


def image_filters(request: Request) -> list[str]:
    out = []
    for item in qfilters(request.query_params):
        key, _, value = item.partition("=")
        if key not in _FILTER_ALIASES and key not in ("id", "intermediate"):
            raise InvalidArgument(f'invalid filter "{key}"')
        out.append(f"{_FILTER_ALIASES.get(key, key)}={value}")
    return out


async def list_images(request: Request) -> Response:

    all_ = docker_bool(request.query_params, "all")
    filters = image_filters(request)
    version = request.scope.get("kiln.api_version")
    # dockerd's reference filter, not podman's (kiln.api.reference_filter)
    patterns = [f.partition("=")[2] for f in filters if f.startswith("reference=")]
    others = [f for f in filters if not f.startswith("reference=")]
    reference_filter.check_patterns(patterns)

    def shown(names: Iterable[str]) -> list[str]:
        return reference_filter.matching(names, patterns)

    def make(ctx: Context) -> list:
        try:
            summaries = ops.list_images(ctx, all=all_, filters=others)
        except NotFound as exc:
            raise _no_such_anchor(exc, others) from exc
        if patterns:
            summaries = [s for s in summaries if shown(s.names) or shown(s.repo_digests)]
        return [shapes.docker_summary(s, version, shown=shown) for s in summaries]

    key = ("docker", all_, shapes.summary_shape(version), *filters)
    return await listing_response(request, key, filters, make)


def _no_such_anchor(exc: NotFound, filters: list[str]) -> NotFound:
    """dockerd's ``No such image: NAME`` for the image a ``before``/``since`` filter names
    and the store does not know (the store's own wording is podman's)."""
    for key, _, name in (f.partition("=") for f in filters):
        if key in ("before", "since") and str(exc).startswith(f"{name}:"):
            return NoSuchImage(shapes.missing_name(name), cause=str(exc))
    return exc


async def inspect_image(request: Request) -> Response:

    name = request.path_params["name"]
    version = request.scope.get("kiln.api_version")
    legacy = shapes.shows_container_config(version)
    with image_lookup(_shown(request, name)):
        data = await run_read(request, lambda ctx: ops.inspect_image(ctx, name, legacy))
    return JSONResponse(shapes.docker_inspect(data, version))


async def image_history(request: Request) -> Response:

    name = request.path_params["name"]
    with image_lookup(_shown(request, name)):
        entries = await run_op(request, lambda ctx: ops.history(ctx, name))
    return JSONResponse(shapes.docker_history(entries))


def target_name(repo: str, tag: str) -> str:
    if not repo:
        raise InvalidArgument('query parameter "repo" is required: the repository to tag in')
    if tag:
        if "@" in repo or ":" in repo.rsplit("/", 1)[-1]:
            raise InvalidArgument(f'repository "{repo}" already has a tag or digest; tag "{tag}"')
        return f"{repo}:{tag}"
    return repo


def _shown(request: Request, name: str) -> str:
    """``name`` in a "No such image" answer: as dockerd shows it on Docker's routes."""
    return name if request.scope.get("kiln.libpod") else shapes.missing_name(name)


def _familiar_repository(name: str) -> str:
    """``docker.io/library/a:1`` -> ``a``: the repository as Docker shows it, no tag or digest."""
    repo = shapes.familiar(name).partition("@")[0]
    slash, colon = repo.rfind("/"), repo.rfind(":")
    return repo[:colon] if colon > slash else repo


async def tag_image(request: Request) -> Response:

    name = request.path_params["name"]
    q = request.query_params
    target = target_name(qstr(q, "repo"), qstr(q, "tag"))
    if not request.scope.get("kiln.libpod"):
        Reference.parse(target)  # refused as given, not as the store would spell it
        target = shapes.docker_name(target)
        if _familiar_repository(target) == "sha256":
            # dockerd's refusal: "sha256:<hex>" would name both an image ID and this tag
            raise InvalidArgument(
                "refusing to create an ambiguous tag using digest algorithm as name"
            )
    with image_lookup(_shown(request, name)):
        await run_op(request, lambda ctx: ops.tag(ctx, name, target))
    return Response(status_code=201)


async def delete_image(request: Request) -> Response:

    name = request.path_params["name"]
    q = request.query_params
    force, noprune = docker_bool(q, "force"), docker_bool(q, "noprune")

    def remove(ctx):
        # dockerd's rules: an image with children is never deleted, its dangling parents are
        result = ops.remove_images(ctx, [name], force=force, docker=True, prune_parents=not noprune)
        ops.raise_first_error(result)
        return result

    with image_lookup(_shown(request, name)):
        result = await run_op(request, remove)
    return JSONResponse(shapes.delete_items(result))


def prune_filters(request: Request) -> tuple[bool, list[str]]:
    """Docker's prune filters -> (all, kiln filters): ``dangling=false`` means all unused."""
    all_ = False
    rest = []
    for item in qfilters(request.query_params):
        key, _, value = item.partition("=")
        if key == "dangling":
            if value.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f'invalid filter "dangling={value}": use true or false')
            all_ = value.lower() in ("false", "0")
        elif key in ("label", "label!", "until"):
            rest.append(item)
        else:
            raise InvalidArgument(f'invalid filter "{key}"')
    return all_, rest


async def prune_images(request: Request) -> Response:

    all_, filters = prune_filters(request)
    result = await run_op(request, lambda ctx: ops.prune(ctx, all=all_, filters=filters))
    deleted = [{"Untagged": shapes.familiar(n)} for n in result.untagged]
    deleted += [{"Deleted": shapes.with_sha(i)} for i in result.removed]
    # null when nothing went, as dockerd answers (and its /build/prune's CachesDeleted)
    return JSONResponse({"ImagesDeleted": deleted or None, "SpaceReclaimed": result.bytes_freed})


routes = [
    Route("/images/json", list_images, methods=["GET"]),
    Route("/images/prune", prune_images, methods=["POST"]),
    Route("/images/{name:path}/json", inspect_image, methods=["GET"]),
    Route("/images/{name:path}/history", image_history, methods=["GET"]),
    Route("/images/{name:path}/tag", tag_image, methods=["POST"]),
    Route("/images/{name:path}", delete_image, methods=["DELETE"]),
]

__all__ = ["image_filters", "prune_filters", "routes", "target_name"]
