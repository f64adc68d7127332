"""The ASGI application: routes, version prefixes, common headers, errors, access log."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiln.errors import InvalidArgument, KilnError
from kiln.ops.config import Config

from . import (
    events,
    routes_build,
    routes_containers,
    routes_images,
    routes_libpod,
    routes_manifests,
    routes_registry,
    routes_session,
    routes_system,
    routes_system_df,
    routes_transfer,
)
from .errors import error_body, kiln_error_handler
from .params import fold_query_names
from .router import IndexedRouter
from .routes_system import kiln_version
from .versions import (
    DOCKER_API_VERSION,
    LIBPOD_API_VERSION,
    check_docker_version,
    is_docker_prefix,
    is_libpod,
    split_version,
)

access_log = logging.getLogger("kiln.api.access")


class Activity:
    """Requests in flight and the time the last one ended (for ``--time``)."""

    def __init__(self) -> None:
        self.active = 0
        self.last = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self.active else time.monotonic() - self.last


class Frontdoor:
    """Strips ``/v{version}``, checks Docker versions, adds headers, logs, counts activity."""

    def __init__(self, app: ASGIApp, activity: Activity):
        self.app = app
        self.activity = activity
        # the headers every response gets (made once: they never change)
        self._headers = [
            (b"api-version", DOCKER_API_VERSION.encode()),
            (b"docker-experimental", b"false"),
            (b"ostype", b"linux"),
            (b"server", f"kiln/{kiln_version()}".encode()),
        ]
        self._libpod_headers = [
            *self._headers,
            (b"libpod-api-version", LIBPOD_API_VERSION.encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        self.activity.active += 1
        status = {"code": 0, "bytes": 0}
        original_path = scope["path"]
        version, path = split_version(original_path)
        libpod = is_libpod(path)
        scope = dict(scope)
        scope["path"] = path
        scope["raw_path"] = path.encode()
        scope["kiln.api_version"] = version
        scope["kiln.libpod"] = libpod
        if libpod and scope.get("query_string"):  # podman matches names in any case
            scope["query_string"] = fold_query_names(scope["query_string"])
        extra = self._libpod_headers if libpod else self._headers

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [
                    h for h in extra if h[0] not in names
                ]
            elif message["type"] == "http.response.body":
                status["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            refusal = None if version is None or libpod else _refused_version(version)
            if refusal is not None:
                await refusal(scope, receive, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            self.activity.active -= 1
            self.activity.last = time.monotonic()
            _log_access(scope, original_path, status, started)


def _refused_version(version: str) -> JSONResponse | None:
    """dockerd's answer to a ``/v{version}`` it does not serve, if it does not."""
    if not is_docker_prefix(version):
        return JSONResponse({"message": "page not found"}, status_code=404)
    try:
        check_docker_version(version)
    except InvalidArgument as exc:
        return JSONResponse(error_body(exc), status_code=400)
    return None


def _log_access(scope: Scope, path: str, status: dict[str, int], started: float) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    who = f"{client[0]}:{client[1]}" if client else "unix"
    query = scope.get("query_string", b"").decode("latin-1")
    target = path + (f"?{query}" if query else "")
    access_log.info(
        '%s "%s %s HTTP/%s" %d %d %.3fs',
        who,
        scope.get("method", ""),
        target,
        scope.get("http_version", "1.1"),
        status["code"],
        status["bytes"],
        time.monotonic() - started,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    libpod = bool(request.scope.get("kiln.libpod"))
    status = exc.status_code
    if status == 405 and not libpod:
        status = 404  # dockerd answers a known path asked with another method as unknown
    if status == 404:
        message = "page not found"
    elif status == 405:
        message = f"method {request.method} not allowed for {request.url.path}"
    else:
        message = exc.detail or "bad request"
    body: dict[str, Any] = {"message": message}
    if libpod:
        body.update(cause=message, response=status)
    return JSONResponse(body, status_code=status)


def create_app(config: Config | None = None, activity: Activity | None = None) -> ASGIApp:
    """The whole API as one ASGI app; ``config`` says which store to serve."""

    routes = [
        *routes_system.routes,
        *routes_system_df.routes,
        *events.routes,
        *routes_registry.routes,
        *routes_build.routes,
        *routes_session.routes,
        *routes_transfer.routes,
        *routes_manifests.routes,  # before routes_libpod's catch-all /libpod/{kind}/...
        *routes_libpod.routes,
        *routes_images.routes,  # it holds the catch-all /images/{name}
        *routes_containers.routes,  # after libpod's container /json and /exists answers
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            KilnError: kiln_error_handler,
            HTTPException: _http_error,
            Exception: kiln_error_handler,
        },
    )
    app.router = IndexedRouter(routes)  # the same table, found by prefix (kiln.api.router)
    app.state.config = config or Config.from_env()
    return Frontdoor(app, activity or Activity())


__all__ = ["Activity", "Frontdoor", "create_app"]
