"""Container routes: kiln builds and stores images, it runs no containers.

Every ``/containers/...`` and ``/libpod/containers/...`` route answers 501 with one
sentence saying so, instead of a 404 "page not found" (or, for ``docker run``, a 404
"No such image" that made the docker CLI claim the image was missing and pull it).
Two answers stay what clients rely on: inspecting a container by name answers 404 "no
such container" (``docker inspect`` and ``podman inspect`` then try the image of that
name), and podman 4.3's ``image diff`` asks ``/libpod/containers/{name}/changes`` for an
image's changes, which is served. ``docker system prune`` prunes containers and networks
(``--volumes``: volumes) before images and the build cache: kiln has none of them, so
those prunes answer that nothing went, as dockerd with none does.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiln.errors import NotFound
from kiln.ops import images as ops

from .errors import image_lookup
from .params import qstr
from .wiring import run_op

NOT_RUNNING = (
    "kiln builds and stores images; it does not run containers \u2014 use `kiln from` / `kiln run`"
)
_METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD"]


async def not_implemented(request: Request) -> Response:
    body: dict = {"message": NOT_RUNNING}
    if request.scope.get("kiln.libpod"):
        body.update(cause="not implemented", response=501)
    return JSONResponse(body, status_code=501)


async def no_such_container(request: Request) -> Response:
    raise NotFound(f"No such container: {request.path_params['name']}")


async def image_changes(request: Request) -> Response:
    """podman 4.3's ``image diff``: the image's changes against its parent (or ``parent``)."""

    q = request.query_params
    if qstr(q, "difftype", "all") not in ("image", "all"):
        return await not_implemented(request)
    name = request.path_params["name"]
    parent = qstr(q, "parent") or None
    kinds = {"C": 0, "A": 1, "D": 2}
    with image_lookup(name):
        changes = await run_op(request, lambda ctx: ops.diff(ctx, name, parent))
    return JSONResponse([{"Path": path, "Kind": kinds.get(kind, 0)} for kind, path in changes])


async def nothing_pruned(request: Request) -> Response:
    kind = request.url.path.rstrip("/").split("/")[-2]  # containers, networks, volumes
    body: dict = {f"{kind.capitalize()}Deleted": [] if kind == "volumes" else None}
    if kind != "networks":
        body["SpaceReclaimed"] = 0
    return JSONResponse(body)


routes = [
    Route("/containers/prune", nothing_pruned, methods=["POST"]),
    Route("/networks/prune", nothing_pruned, methods=["POST"]),
    Route("/volumes/prune", nothing_pruned, methods=["POST"]),
    Route("/containers/{name:path}/json", no_such_container, methods=["GET"]),
    Route("/libpod/containers/{name:path}/changes", image_changes, methods=["GET"]),
    Route("/containers", not_implemented, methods=_METHODS),
    Route("/containers/{rest:path}", not_implemented, methods=_METHODS),
    Route("/libpod/containers", not_implemented, methods=_METHODS),
    Route("/libpod/containers/{rest:path}", not_implemented, methods=_METHODS),
]

__all__ = ["NOT_RUNNING", "routes"]
