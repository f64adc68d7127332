"""``login`` and ``logout``: verify credentials against a registry, then record them.

The auth file is written atomically (mode 0600, directories 0700); nothing is
written when the registry refuses the credentials.
"""

from __future__ import annotations

from kiln.errors import InvalidArgument, NotFound
from kiln.oci.reference import DEFAULT_DOMAIN, is_registry_key
from kiln.registry import credentials
from kiln.registry.client import RegistryClient, RegistryOptions
from kiln.registry.credentials import Credential


def _registry_key(registry: str) -> tuple[str, str]:
    """(host to contact, key to store): ``host[/ns/repo]`` with schemes dropped."""
    key = credentials.normalize_key(registry)
    if not key:
        raise InvalidArgument("login needs a registry name")
    host, _, path = key.partition("/")
    if ":" in path or "@" in path:  # a key names a registry or repository, never an image
        raise InvalidArgument(f'reference "{registry}" contains tag or digest')
    if not is_registry_key(key):  # as podman parses it: no "..", no spaces, no NUL
        raise InvalidArgument(f"{registry!r} is no registry name: invalid reference format")
    return (DEFAULT_DOMAIN if host == DEFAULT_DOMAIN else host), key


def login(
    registry: str,
    username: str,
    password: str,
    authfile: str | None = None,
    tls_verify: bool | None = None,
    cert_dir: str | None = None,
    registries_conf: str | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    retry_backoff: bool = True,
) -> str:
    """Check the credentials with ``GET /v2/`` and store them; returns the auth file path.
    The retry values are ``RegistryOptions``' (None: the defaults)."""
    _host, key = _registry_key(registry)
    verify_login(registry, username, password, tls_verify, cert_dir, registries_conf,
                 retries, retry_delay, retry_backoff, authfile=authfile)  # fmt: skip
    return credentials.store_credential(key, Credential(username, password), authfile)


def verify_login(
    registry: str,
    username: str,
    password: str,
    tls_verify: bool | None = None,
    cert_dir: str | None = None,
    registries_conf: str | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    retry_backoff: bool = True,
    *,
    authfile: str | None = None,
    identity_token: str = "",
) -> str:
    """Check the credentials (a username and password, or an identity token: an OAuth2
    refresh token) with ``GET /v2/`` and keep them nowhere; returns the host contacted.
    Unauthorized if refused."""
    options = RegistryOptions(
        tls_verify=tls_verify,
        cert_dir=cert_dir,
        authfile=authfile,
        registries_conf=registries_conf,
        retries=retries,
        retry_delay=retry_delay,
        retry_backoff=retry_backoff,
    )
    host, _token = _check(registry, Credential(username, password, identity_token), options)
    return host


def docker_login(registry: str, cred: Credential, options: RegistryOptions) -> str:
    """The Docker API's ``POST /auth``: check ``cred`` as :func:`verify_login` does, asking
    the token server for a refresh token as dockerd does, and keep it nowhere (the client
    records it). Returns the identity token dockerd answers with: the refresh token the
    token server issued, else the one ``cred`` holds, else ""."""
    _host, issued = _check(registry, cred, options, want_refresh_token=True)
    return issued or cred.identity_token


def _check(
    registry: str, cred: Credential, options: RegistryOptions, want_refresh_token: bool = False
) -> tuple[str, str]:
    """(host contacted, refresh token issued or "") for a login's ``GET /v2/``."""
    if not (cred.username or cred.identity_token):
        raise InvalidArgument("login needs a username")
    host, _key = _registry_key(registry)
    with RegistryClient(options) as client:
        issued = client.check_login(host, cred, want_refresh_token=want_refresh_token)
    return host, issued


def logout(registry: str | None, authfile: str | None = None, all: bool = False) -> list[str]:
    """Forget the credentials of ``registry`` (or of every registry with ``all``)."""
    if all:
        return credentials.remove_credential(None, authfile)
    if not registry:
        raise InvalidArgument("logout needs a registry name or --all")
    _host, key = _registry_key(registry)
    return credentials.remove_credential(key, authfile)


def stored_login(registry: str, authfile: str | None = None) -> Credential | None:
    """The credential a pull of ``registry`` (``host[/ns/repo]``) would use: the most
    specific key first, every auth file and helper in podman's order; None when none."""
    _host, key = _registry_key(registry)
    host, _, repository = key.partition("/")
    return credentials.lookup(host, repository or None, authfile=authfile)


def get_login(registry: str, authfile: str | None = None) -> str:
    """The username stored for ``registry`` (podman's ``login --get-login``); NotFound
    when there is none (an identity token alone names no user)."""
    cred = stored_login(registry, authfile)
    if cred is None or not cred.username:
        raise NotFound(f"not logged into {registry}")
    return cred.username
