"""libpod manifest-list routes (``/libpod/manifests/...``) in the shapes podman 4.x's
bindings send and decode, over ``kiln.ops.manifests``:

    POST   /libpod/manifests/{name}?images=&all=&amend=     create      -> {"Id"}
    GET    /libpod/manifests/{name}/exists                  exists      -> 204 / 404
    GET    /libpod/manifests/{name}/json                    inspect     -> the list document
    PUT    /libpod/manifests/{name}  {operation, images...} update / remove / annotate
    POST   /libpod/manifests/{name}/add  {images...}        add (the v3 form)
    DELETE /libpod/manifests/{name}                          rm          -> ManifestRemoveReport
    POST   /libpod/manifests/{name}/registry/{dest}?all=    push        -> stream, then {"Id"}
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiln.errors import InvalidArgument, KilnError, NotFound

from .errors import error_body
from .params import qbool, qhas, qlist, qstr
from .registry_auth import push_pull_options
from .registry_only import registry_reference
from .streaming import Handoff, Reply, StreamedOp
from .uploads import json_body
from .wiring import config_of, context_for, run_op

MAX_BODY = 1 << 20  # a modify request is a few names and fields


def _manifests() -> ModuleType:
    """``kiln.ops.manifests``, imported by the first request that needs it, on its worker
    thread (start-up: with the registry client and transports it brings, it was most of
    what ``kiln serve`` imported before answering ``/_ping``)."""
    from kiln.ops import manifests  # start-up: see the docstring

    return manifests


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, keys folded (podman's bindings send Go field names,
    ``OSVersion``; the server's own names are ``os_version``); a body that is not one is
    a 400 (it was a 500, an internal error, when it was not JSON)."""
    data = await json_body(request, "manifest list", limit=MAX_BODY)
    return {str(k).replace("_", "").lower(): v for k, v in data.items()}


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument("expected a list of strings")
    return [v for v in value if v]


def _annotations(body: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in _strings(body.get("annotation")):  # the older KEY=VALUE list
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InvalidArgument(f'no value given for annotation "{item}": use KEY=VALUE')
        out[key] = value
    given = body.get("annotations") or {}
    if not isinstance(given, dict):
        raise InvalidArgument("annotations must be an object of strings")
    out.update({str(k): str(v) for k, v in given.items()})
    return out


def _platform(body: dict[str, Any]) -> dict[str, Any]:
    def text(key: str) -> str | None:
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"{key} must be a string")
        return value or None

    return {
        "arch": text("arch"),
        "os": text("os"),
        "variant": text("variant"),
        "os_version": text("osversion"),
        "features": _strings(body.get("features")),
        "os_features": _strings(body.get("osfeatures")),
        "annotations": _annotations(body),
    }


async def create_list(request: Request) -> Response:

    name = request.path_params["name"]
    q = request.query_params
    images = [i for v in qlist(q, "images") for i in v.split(",") if i]
    all_, amend = qbool(q, "all"), qbool(q, "amend")
    tls = qbool(q, "tlsVerify", True) if qhas(q, "tlsVerify") else None
    opts = push_pull_options(request, tls)
    rec = await run_op(
        request,
        lambda ctx: _manifests().create(ctx, name, images, all=all_, amend=amend, options=opts),
    )
    return JSONResponse({"Id": rec.id.removeprefix("sha256:")}, status_code=201)


async def list_exists(request: Request) -> Response:

    name = request.path_params["name"]
    if await run_op(request, lambda ctx: _manifests().exists(ctx, name)):
        return Response(status_code=204)
    raise NotFound(f"{name}: image not known")


async def inspect_list(request: Request) -> Response:

    name = request.path_params["name"]
    q = request.query_params
    tls = qbool(q, "tlsVerify", True) if qhas(q, "tlsVerify") else None
    opts = push_pull_options(request, tls)
    doc = await run_op(request, lambda ctx: _manifests().inspect(ctx, name, options=opts))
    return JSONResponse(doc)


async def modify_list(request: Request) -> Response:
    """PUT: ``operation`` update (add ``images``), remove (``images`` are digests) or
    annotate (the entry ``images[0]``). Errors per image are reported, as podman does."""

    name = request.path_params["name"]
    body = await _json_body(request)
    operation = str(body.get("operation") or "update").lower()
    return await _modify(request, name, operation, body)


async def add_to_list(request: Request) -> Response:

    body = await _json_body(request)
    return await _modify(request, request.path_params["name"], "update", body)


async def _modify(request: Request, name: str, operation: str, body: dict) -> Response:
    images = _strings(body.get("images"))
    all_ = bool(body.get("all"))
    tls = (
        qbool(request.query_params, "tlsVerify", True)
        if qhas(request.query_params, "tlsVerify")
        else None
    )
    opts = push_pull_options(request, tls)
    plat = _platform(body)
    if operation not in ("update", "remove", "annotate"):
        raise InvalidArgument(f'unknown operation "{operation}": use update, remove or annotate')

    def work(ctx) -> Any:
        manifests = _manifests()
        rec = manifests.get(ctx, name)
        targets: list[str | None] = [*images] if images else []
        if not targets and operation == "annotate":
            targets = [None]  # annotate the list itself
        for image in targets:
            if operation == "update":
                rec = manifests.add(ctx, name, image, all=all_, **plat, options=opts)
            elif operation == "remove":
                rec = manifests.remove(ctx, name, image)
            else:
                rec = manifests.annotate(ctx, name, image, **plat)
        return rec

    rec = await run_op(request, work)
    return JSONResponse(
        {"Id": rec.id.removeprefix("sha256:"), "images": images, "files": None, "errors": None}
    )


async def remove_list(request: Request) -> Response:

    name = request.path_params["name"]
    removed = await run_op(request, lambda ctx: _manifests().rm(ctx, name))
    return JSONResponse(
        {
            "Deleted": [i.removeprefix("sha256:") for _, i in removed],
            "Untagged": [n for names, _ in removed for n in names],
            "Errors": [],
            "ExitCode": 0,
        }
    )


async def push_list(request: Request) -> Reply:

    name = request.path_params["name"]
    destination = "docker://" + await registry_reference(request.path_params["destination"])
    q = request.query_params
    all_ = qbool(q, "all", True)
    fmt = qstr(q, "format") or None
    compression = qstr(q, "compressionFormat") or None  # podman's --compression-format
    quiet = qbool(q, "quiet")
    tls = qbool(q, "tlsVerify", True) if qhas(q, "tlsVerify") else None
    options = push_pull_options(request, tls)
    config = config_of(request)

    def work(h: Handoff):
        with context_for(config, h) as ctx:
            return _manifests().push(ctx, name, destination, all=all_, format=fmt,
                                     compression=compression, options=options)  # fmt: skip

    def event(e) -> list[dict]:
        if quiet or not e.message or e.kind == "result":
            return []
        return [{"stream": e.message + "\n"}]

    def done(r: Any) -> list[dict]:
        return [{"Id": r.digest}]

    def error(exc: BaseException) -> list[dict]:
        message = error_body(exc, True)["message"] if isinstance(exc, KilnError) else str(exc)
        return [{"error": message}]

    return StreamedOp(work, event, done, error, libpod=True)


routes = [
    Route("/libpod/manifests/{name:path}/exists", list_exists, methods=["GET"]),
    Route("/libpod/manifests/{name:path}/json", inspect_list, methods=["GET"]),
    Route("/libpod/manifests/{name:path}/add", add_to_list, methods=["POST"]),
    Route("/libpod/manifests/{name:path}/registry/{destination:path}", push_list, methods=["POST"]),
    Route("/libpod/manifests/{name:path}", create_list, methods=["POST"]),
    Route("/libpod/manifests/{name:path}", modify_list, methods=["PUT"]),
    Route("/libpod/manifests/{name:path}", remove_list, methods=["DELETE"]),
]

__all__ = ["routes"]
