"""kiln errors -> HTTP statuses and Docker/libpod error bodies.

Docker clients read ``{"message": ...}``; podman's bindings also read ``cause``
and ``response`` (the status code). A status of 500 means a kiln bug, but on the Docker
routes: there an ``Unavailable`` (a registry that cannot be reached, a full disk, a
missing runtime) is 500 too, as dockerd answers every error it does not classify (its
503 is for its own services: a swarm, a plugin), where the libpod routes keep 503/507.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from kiln.errors import KilnError, NotFound, Unavailable, translated
from kiln.util.redact import redact

log = logging.getLogger("kiln.api")


class NoSuchImage(NotFound):
    def __init__(self, name: str, cause: str = "image not known"):
        super().__init__(f"No such image: {name}")
        self.cause = cause


def status_of(exc: BaseException, libpod: bool = True) -> int:
    """The HTTP status of ``exc`` on a libpod route, or (``libpod`` false) a Docker route."""
    if isinstance(exc, KilnError):
        if not libpod and isinstance(exc, Unavailable):
            return 500
        return int(getattr(exc, "http_status", 500))
    return 500


def cause_of(exc: BaseException) -> str:
    """The short root cause podman puts in ``cause``."""
    cause = getattr(exc, "cause", None)
    if cause:
        return str(cause)
    if isinstance(exc, NotFound):
        return "image not known" if "image" in str(exc).lower() else "no such object"
    text = str(exc)
    return text.rsplit(": ", 1)[-1] if text else type(exc).__name__


def error_body(exc: BaseException, libpod: bool = False) -> dict[str, Any]:
    exc = translated(exc)
    status = status_of(exc, libpod)
    if isinstance(exc, KilnError):
        message = str(exc) or type(exc).__name__
    else:
        message = f"internal error in kiln: {type(exc).__name__}: {exc}"
    body: dict[str, Any] = {"message": redact(message)}
    if libpod:
        body["cause"] = redact(cause_of(exc)) if isinstance(exc, KilnError) else "internal error"
        body["response"] = status
    return body


def error_response(exc: BaseException, libpod: bool = False) -> JSONResponse:
    exc = translated(exc)
    if not isinstance(exc, KilnError):
        log.error("unexpected error answering a request", exc_info=exc)
    return JSONResponse(error_body(exc, libpod), status_code=status_of(exc, libpod))


def is_libpod_request(request: Request) -> bool:
    return bool(request.scope.get("kiln.libpod"))


async def kiln_error_handler(request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc, is_libpod_request(request))


@contextmanager
def image_lookup(name: str) -> Iterator[None]:
    """Turn the store's "image not known" into Docker's ``No such image: <name>``."""
    try:
        yield
    except NoSuchImage:
        raise
    except NotFound as exc:
        raise NoSuchImage(name, cause=str(exc)) from exc


__all__ = [
    "NoSuchImage",
    "error_body",
    "error_response",
    "image_lookup",
    "kiln_error_handler",
    "status_of",
]
