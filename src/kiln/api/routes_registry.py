"""Registry routes that move no image: ``POST /auth`` (``docker login``, docker-py
``login()``), ``GET /distribution/{name}/json`` (what the registry serves for a name) and
``GET /libpod/images/{name}/resolve`` (the full names a short name may mean: podman's
route, added in podman 5, answers with its pull candidates in short-name mode
"disabled", so an alias alone, else one name per unqualified-search registry, and never
``localhost/``, which no pull tries; kiln gives the same).

dockerd checks the credentials against the registry and keeps nothing: the client
records them and sends them again with each pull, push and build
(``X-Registry-Auth``/``X-Registry-Config``). kiln does the same: a login through the
API never writes the server's auth files, and request credentials live only as long as
the request.
"""

from __future__ import annotations

from types import ModuleType

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiln.errors import InvalidArgument
from kiln.ops.options import RegistryOptions

from .registry_auth import credential_of, loopback_registry, push_pull_options
from .uploads import json_body
from .wiring import run_op

DOCKER_HUB = "https://index.docker.io/v1/"


def _registry() -> ModuleType:
    """``kiln.ops.registry``, imported by the first request that needs it, on its worker
    thread (start-up: the registry client is a large part of what ``kiln serve`` imported
    before answering ``/_ping``)."""
    from kiln.ops import registry  # start-up: see the docstring

    return registry


async def auth(request: Request) -> Response:

    body = await json_body(request, "auth")
    cred = credential_of(body)
    if cred is None:
        raise InvalidArgument("give a username and password, or an identity token, to log in")
    server = str(body.get("serveraddress") or body.get("ServerAddress") or DOCKER_HUB)
    host = server.split("://", 1)[-1].split("/", 1)[0]
    # dockerd treats 127.0.0.0/8 as an insecure registry: plain HTTP
    tls_verify = False if loopback_registry(f"{host}/x") else None
    # the refresh token the token server issued (what dockerd answers): never logged
    token = await run_op(
        request,
        lambda ctx: _registry().docker_login(
            ctx, server, cred, options=RegistryOptions(tls_verify=tls_verify)
        ),
    )
    return JSONResponse({"Status": "Login Succeeded", "IdentityToken": token})


async def distribution(request: Request) -> Response:

    name = request.path_params["name"]
    options = push_pull_options(request, reference=name)
    found = await run_op(
        request, lambda ctx: _registry().remote_descriptor(ctx, name, options=options)
    )
    return JSONResponse(
        {
            "Descriptor": {
                "mediaType": found.media_type,
                "digest": found.digest,
                "size": found.size,
            },
            "Platforms": found.platforms,
        }
    )


async def resolve(request: Request) -> Response:

    name = request.path_params["name"]
    names = await run_op(request, lambda ctx: _registry().resolve_names(ctx, name))
    return JSONResponse({"Names": names})


routes = [
    Route("/auth", auth, methods=["POST"]),
    Route("/distribution/{name:path}/json", distribution, methods=["GET"]),
    Route("/libpod/images/{name:path}/resolve", resolve, methods=["GET"]),
]

__all__ = ["routes"]
