"""Docker's auth headers -> the registry options kiln's pull/push use cases take."""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request

from .params import decode_auth_header


def creds_of(auth: dict[str, Any]) -> str | None:
    """``user:password`` from an AuthConfig (username/password, or the ``auth`` field)."""
    user, password = auth.get("username") or "", auth.get("password") or ""
    if not user and auth.get("auth"):
        try:
            user, _, password = base64.b64decode(str(auth["auth"])).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
    if not user:
        return None
    return f"{user}:{password}"


def loopback_registry(reference: str) -> bool:
    """Is the reference's registry on 127.0.0.0/8 or localhost (insecure by default in dockerd)?"""
    first = reference.removeprefix("docker://").split("/", 1)
    if len(first) < 2:
        return False
    host = first[0].rsplit(":", 1)[0] if first[0].count(":") == 1 else first[0]
    host = host.strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


def push_pull_options(
    request: Request, tls_verify: bool | None = None, reference: str = ""
) -> dict[str, Any]:
    """Options from ``X-Registry-Auth`` (and a libpod ``tlsVerify``) for ops pull/push.

    As dockerd treats 127.0.0.0/8 as insecure registries, the Docker routes pass
    ``reference`` so that a loopback registry is reached over plain HTTP.
    """
    opts: dict[str, Any] = {}
    if tls_verify is None and reference and loopback_registry(reference):
        tls_verify = False
    header = request.headers.get("x-registry-auth", "")
    if header:
        creds = creds_of(decode_auth_header(header, "X-Registry-Auth"))
        if creds:
            opts["creds"] = creds
    if tls_verify is not None:
        opts["tls_verify"] = tls_verify
    return opts


def build_registry_auth(request: Request) -> dict[str, str]:
    """``X-Registry-Config``: registry host -> ``user:password``, for pulls during a build."""
    header = request.headers.get("x-registry-config", "")
    if not header:
        return {}
    out = {}
    for server, auth in decode_auth_header(header, "X-Registry-Config").items():
        if isinstance(auth, dict):
            creds = creds_of(auth)
            if creds:
                host = server.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
                out[host] = creds
    return out


__all__ = ["build_registry_auth", "creds_of", "push_pull_options"]
