"""``POST /session``: where a BuildKit client opens its session, held so that kiln's
refusal of the BuildKit build reaches the user.

``DOCKER_BUILDKIT=1 docker build`` (Debian's 20.10 client; set in many shells) dials
``/session`` (an HTTP upgrade to ``h2c``) and posts ``/build?version=2`` at the same time,
and prints whichever fails first. kiln has no BuildKit solver: it refuses ``version=2``
with a message that says what to do (``routes_build``), but a 404 here came first and the
user read ``failed to dial gRPC: unable to upgrade to h2c, received 404`` (podman's
compat service answers the same). So the upgrade is accepted and the connection held,
silent, until the client closes it, which it does as soon as the build is refused
(its session's ``Close``), or until ``HOLD_SECONDS`` pass.

A request that is not an ``h2c`` upgrade is a 400, in dockerd's words.
"""

from __future__ import annotations

import asyncio

from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

#: how long a session nobody closes is held (the refusal it waits for is immediate)
HOLD_SECONDS = 120.0


class Session:
    """The ASGI endpoint of ``POST /session`` (raw ASGI: it answers 101 and no body)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = _refusal(scope)
        if refusal:
            await JSONResponse({"message": refusal}, 400)(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 101,
                # content-length: no chunked framing is written around the upgraded stream
                "headers": [
                    (b"connection", b"Upgrade"),
                    (b"upgrade", b"h2c"),
                    (b"content-length", b"0"),
                ],  # fmt: skip
            }
        )
        try:
            await asyncio.wait_for(_until_disconnect(receive), HOLD_SECONDS)
        except TimeoutError:
            pass  # returning without a body: the server closes the connection


def _refusal(scope: Scope) -> str:
    """Why the request is no ``h2c`` upgrade, in dockerd's words; '' when it is one."""
    headers = dict(scope.get("headers", []))
    connection = {t.strip().lower() for t in headers.get(b"connection", b"").split(b",")}
    proto = headers.get(b"upgrade", b"").decode("latin-1")
    if not proto or b"upgrade" not in connection:
        return "no upgrade proto in request"
    if proto.lower() != "h2c":
        return f"protocol {proto} not supported"
    return ""


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


routes = [Route("/session", Session(), methods=["POST"])]

__all__ = ["HOLD_SECONDS", "Session", "routes"]
