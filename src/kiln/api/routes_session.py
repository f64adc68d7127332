"""``POST /session``: where a BuildKit client opens its session; accepted and ended at
once, so that kiln's refusal of the BuildKit build is what the user reads.

``DOCKER_BUILDKIT=1 docker build`` (Debian's 20.10 client; set in many shells) dials
``/session`` (an HTTP upgrade to ``h2c``) and posts ``/build?version=2`` at the same time,
and prints whichever fails first. kiln has no BuildKit solver: it refuses ``version=2``
with a message that says what to do (``routes_build``), but a 404 here came first and the
user read ``failed to dial gRPC: unable to upgrade to h2c, received 404`` (podman's
compat service answers the same). So the upgrade is accepted (``101``) and the
connection closed right after (``kiln.api.upgrade``): the client's session ends without
an error, and the build's refusal is the only one. Holding the session open instead
made the client wait for it, up to its HTTP/2 preface timeout (10 s), when its build was
refused before its session was up.

A request that is not an ``h2c`` upgrade is a 400, in dockerd's words.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


class Session:
    """The ASGI endpoint of ``POST /session`` (raw ASGI: it answers 101 and no body)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = _refusal(scope)
        if refusal:
            await JSONResponse({"message": refusal}, 400)(scope, receive, send)
            return
        # content-length: no chunked framing around the switched stream; the response's
        # end closes the connection (kiln.api.upgrade)
        headers = [(b"connection", b"Upgrade"), (b"upgrade", b"h2c"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 101, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


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


routes = [Route("/session", Session(), methods=["POST"])]

__all__ = ["Session", "routes"]
