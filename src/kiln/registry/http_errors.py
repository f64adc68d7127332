"""Distribution error bodies and HTTP statuses -> kiln errors, in Docker's wording.

A registry answers ``{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "...",
"detail": ...}]}``; Docker prints each as ``manifest unknown: <message>``.
"""

from __future__ import annotations

from kiln.errors import InvalidArgument, KilnError, NotFound, Unauthorized, Unavailable
from kiln.oci import strict_json
from kiln.registry._lean_httpx import httpx  # httpx without its CLI and trio
from kiln.registry.retry import PERMANENT_5XX, is_retryable_status

MAX_ERROR_BODY = 64 * 1024


def read_small(response: httpx.Response, limit: int = MAX_ERROR_BODY) -> bytes:
    """At most ``limit`` bytes of a (possibly streamed) response body; closes it."""
    try:
        return response.content[:limit]
    except httpx.ResponseNotRead:
        pass
    out = bytearray()
    try:
        for chunk in response.iter_bytes():
            out += chunk
            if len(out) >= limit:
                break
    except (httpx.HTTPError, httpx.StreamError):
        pass
    finally:
        response.close()
    return bytes(out[:limit])


def error_entries(body: bytes) -> list[tuple[str, str, object]]:
    """``(code, message, detail)`` triples from a distribution error body (or none)."""
    try:
        obj = strict_json.parse(body)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(obj, dict):
        return []
    errors = obj.get("errors")
    if isinstance(errors, list):
        out = []
        for e in errors:
            if isinstance(e, dict):
                out.append((str(e.get("code") or ""), str(e.get("message") or ""), e.get("detail")))
        return out
    if isinstance(obj.get("message"), str):  # some servers answer {"message": ...}
        return [("", obj["message"], None)]
    if isinstance(obj.get("details"), str):  # token servers
        return [("", obj["details"], None)]
    return []


def describe_entries(entries: list[tuple[str, str, object]]) -> str:
    parts = []
    for code, message, _detail in entries:
        text = code.lower().replace("_", " ")
        if text and message and message != text:
            parts.append(f"{text}: {message}")
        else:
            parts.append(text or message)
    return "; ".join(p for p in parts if p)


_STATUS_TEXT = {
    400: "bad request",
    401: "unauthorized: authentication required",
    403: "denied: requested access to the resource is denied",
    404: "not found",
    405: "unsupported: the registry does not support this operation",
    413: "request entity too large",
    416: "requested range not satisfiable",
    429: "toomanyrequests: too many requests to the registry, try again later",
    501: "unsupported: the server does not implement this request (is it a registry?)",
}


class ServerUnsupported(InvalidArgument):
    """A request the server says it will never serve (501, 505): not retried, and a pull
    goes on to its next source (a mirror that is a plain web server or an old proxy)."""


def error_for(response: httpx.Response, context: str, body: bytes | None = None) -> KilnError:
    """The kiln error for a failed response; ``context`` says what was being done."""
    if body is None:
        body = read_small(response)
    entries = error_entries(body)
    status = response.status_code
    detail = describe_entries(entries) or _STATUS_TEXT.get(status) or f"HTTP status {status}"
    codes = {code for code, _m, _d in entries}
    if status == 404 and "NAME_UNKNOWN" in codes:
        return NotFound(f"{context}: repository not found: {detail}")
    if status == 404:
        return NotFound(f"{context}: {detail}")
    if status == 401:
        if not detail.startswith("unauthorized"):
            detail = f"unauthorized: {detail}"
        return Unauthorized(f"{context}: {detail}")
    if status == 403:
        return Unauthorized(f"{context}: {detail}")
    if status in (429, 408) or (status >= 500 and is_retryable_status(status)):
        return Unavailable(f"{context}: {detail} (HTTP {status}); try again later")
    if status in PERMANENT_5XX:
        return ServerUnsupported(f"{context}: {detail} (HTTP {status})")
    return InvalidArgument(f"{context}: {detail}")
