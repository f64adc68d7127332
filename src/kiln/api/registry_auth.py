"""Docker's auth headers -> the registry options kiln's pull/push use cases take."""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request

from kiln.oci.reference import is_loopback_domain
from kiln.ops.options import Credential, RegistryOptions

from .errors import is_libpod_request
from .params import decode_auth_header

_AUTH_CONFIG_KEYS = frozenset(
    {"username", "password", "auth", "email", "serveraddress", "identitytoken", "registrytoken"}
)


def credential_of(auth: dict[str, Any]) -> Credential | None:
    """The credential of an AuthConfig: username/password (or the ``auth`` field), and an
    ``identitytoken`` (the OAuth2 refresh token ``docker login`` keeps for registries that
    issue one; dockerd trades it at the token server, and so does kiln). Keys in any case:
    podman's own structs spell them ``Username``/``Password``/``IdentityToken``."""
    auth = {str(k).lower(): v for k, v in auth.items()}
    user, password = auth.get("username") or "", auth.get("password") or ""
    token = auth.get("identitytoken") or ""
    if not user and auth.get("auth"):
        try:
            user, _, password = base64.b64decode(str(auth["auth"])).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
    if not all(isinstance(v, str) for v in (user, password, token)):
        return None
    if token:
        return Credential(user, password, token)
    return Credential(user, password) if user else None


def is_single_auth(obj: dict[str, Any]) -> bool:
    """One AuthConfig (Docker's X-Registry-Auth), not a registry -> AuthConfig map (podman's)."""
    return any(
        str(k).lower() in _AUTH_CONFIG_KEYS and not isinstance(v, dict) for k, v in obj.items()
    )


def auth_map(obj: dict[str, Any]) -> dict[str, Credential]:
    """A registry -> AuthConfig map (X-Registry-Config, podman's X-Registry-Auth) -> registry
    -> its credential; keys stay as sent (``https://index.docker.io/v1/``, ``host:port``)
    and are matched like an auth file's."""
    out = {}
    for server, auth in obj.items():
        if isinstance(auth, dict) and server:
            cred = credential_of(auth)
            if cred is not None:
                out[str(server)] = cred
    return out


def request_credentials(request: Request) -> dict[str, Any]:
    """Registry options carrying what the client sent, for this request only: ``creds`` from
    a single X-Registry-Auth, ``auths`` from a map in it or in X-Registry-Config."""
    opts: dict[str, Any] = {}
    auths: dict[str, Credential] = {}
    config = request.headers.get("x-registry-config", "")
    if config:
        auths.update(auth_map(decode_auth_header(config, "X-Registry-Config")))
    header = request.headers.get("x-registry-auth", "")
    if header:
        obj = decode_auth_header(header, "X-Registry-Auth")
        if is_single_auth(obj):
            cred = credential_of(obj)
            if cred is not None:
                opts["creds"] = cred
        else:
            auths.update(auth_map(obj))
    if auths:
        opts["auths"] = auths
    return opts


def loopback_registry(reference: str) -> bool:
    """Is the reference's registry on 127.0.0.0/8 or localhost (insecure by default in dockerd)?"""
    first = reference.removeprefix("docker://").split("/", 1)
    return len(first) == 2 and is_loopback_domain(first[0])


def docker_short_names(request: Request) -> bool:
    """Does a short name in this request mean Docker Hub, as dockerd reads it? On the
    Docker routes; the libpod routes keep registries.conf's rules (podman --remote's)."""
    return not is_libpod_request(request)


def push_pull_options(
    request: Request, tls_verify: bool | None = None, reference: str = ""
) -> RegistryOptions:
    """Options from ``X-Registry-Auth`` (and a libpod ``tlsVerify``) for ops pull/push.

    As dockerd treats 127.0.0.0/8 as insecure registries, the Docker routes pass
    ``reference`` so that a loopback registry is reached over plain HTTP; their short
    names mean Docker Hub (:func:`docker_short_names`).
    """
    if tls_verify is None and reference and loopback_registry(reference):
        tls_verify = False
    return RegistryOptions(
        tls_verify=tls_verify,
        docker_short_names=docker_short_names(request),
        **request_credentials(request),
    )


def build_registry_auth(request: Request) -> dict[str, Credential]:
    """Registry -> credential for the pulls of a build: X-Registry-Config (the docker
    CLI, docker-py, podman) and a map in X-Registry-Auth."""
    return dict(request_credentials(request).get("auths") or {})


def build_registry_options(request: Request) -> RegistryOptions | None:
    """The registry options of a build's pulls: :func:`build_registry_auth`'s credentials,
    and on the Docker route a ``FROM`` short name meaning Docker Hub; None: the defaults."""
    auths, docker = build_registry_auth(request), docker_short_names(request)
    if not auths and not docker:
        return None
    # dockerd pulls a FROM image from a registry on this machine over plain HTTP too
    return RegistryOptions(auths=auths or None, docker_short_names=docker, insecure_loopback=docker)


__all__ = [
    "auth_map",
    "build_registry_auth",
    "build_registry_options",
    "credential_of",
    "docker_short_names",
    "is_single_auth",
    "push_pull_options",
    "request_credentials",
]
