"""``RegistryOptions``: how kiln talks to registries for one operation (TLS, credentials,
registries.conf, retries, uploads, deadlines).

A plain value with no httpx import, so a build or a command can hold one without loading
the client: ``kiln build`` from local images never imports httpx. The CLI's registry flags
(``kiln.cli.commands._registry_flags``), a build (``BuildOptions.registry``) and the API
fill one in; ``kiln.ops.registry.registry_options`` adds the configuration's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, replace
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from kiln.errors import InvalidArgument
from kiln.oci.strict_json import MAX_MANIFEST_BYTES
from kiln.util.lazy_dataclass import dataclass
from kiln.util.pace import DEFAULT_GRACE, DEFAULT_MIN_RATE
from kiln.util.timefmt import parse_go_duration

if TYPE_CHECKING:
    import httpx

    from kiln.registry.credential import Credential

__all__ = [
    "DEFAULT_RETRY_DELAY",
    "DEFAULT_TRIES",
    "MONOLITHIC_MAX",
    "RegistryOptions",
    "retry_values",
]

DEFAULT_TRIES = 3  # attempts in all (podman's default --retry 3 makes 4)
DEFAULT_RETRY_DELAY = 2.0  # seconds before the second attempt, doubling after
MONOLITHIC_MAX = 1 << 40  # blobs up to this size go up in one streamed PUT, as skopeo's


@dataclass(frozen=True)
class RegistryOptions:
    tls_verify: bool | None = None  # None: verify unless registries.conf says insecure
    cert_dir: str | None = None
    authfile: str | None = None
    # every registry's: a Credential (an API request's may hold an identity token instead
    # of a password); "user:pass" as given to --creds is read into one
    creds: str | Credential | None = None
    # registry (auth-file key) -> its credential, for this operation only (an API request's)
    auths: Mapping[str, Credential] | None = field(default=None, repr=False)
    registries_conf: str | None = None
    # True: a short name means Docker Hub, as dockerd reads it (``alpine`` ->
    # ``docker.io/library/alpine``), not registries.conf's aliases and unqualified-search
    # registries (podman's rules); the Docker API's routes set it
    docker_short_names: bool = False
    # True: a registry on 127.0.0.0/8, ::1 or localhost is insecure (plain HTTP allowed),
    # as dockerd treats it; the Docker API's builds set it (its pulls and pushes too)
    insecure_loopback: bool = False
    # None: the configuration's (KILN_RETRY, KILN_RETRY_DELAY), else the defaults below
    retries: int | None = None  # attempts in all (DEFAULT_TRIES)
    retry_delay: float | None = None  # first backoff, doubling (DEFAULT_RETRY_DELAY)
    retry_backoff: bool = True  # False: every wait is retry_delay (podman's --retry-delay)
    chunk_size: int = 8 * 1024 * 1024  # PATCH size for chunked uploads
    monolithic_max: int = MONOLITHIC_MAX  # larger blobs are uploaded in chunks of chunk_size
    timeout: float = 60.0  # per read; also the deadline for a whole manifest
    # one request's response headers, all its attempts and the waits between them (the
    # ping that finds the registry's scheme included; time sending a body not counted)
    deadline: float | None = 150.0
    min_blob_rate: float = DEFAULT_MIN_RATE  # bytes/s a blob download must average ...
    rate_grace: float = DEFAULT_GRACE  # ... once this many seconds have passed
    max_manifest_size: int = MAX_MANIFEST_BYTES
    user_agent: str = "kiln/0.1"
    page_size: int = 1000  # n= for tag and catalog listing (Link pagination beyond)
    transport: httpx.BaseTransport | None = None  # tests and embedders (e.g. MockTransport)

    def __post_init__(self) -> None:
        if isinstance(self.creds, str):  # one form, whoever fills it in (CLI, API, library)
            from kiln.registry.credential import parse_creds  # start-up: only with --creds

            object.__setattr__(self, "creds", parse_creds(self.creds) if self.creds else None)

    def __repr__(self) -> str:
        return (
            f"RegistryOptions(tls_verify={self.tls_verify!r}, cert_dir={self.cert_dir!r}, "
            f"authfile={self.authfile!r}, creds={'<hidden>' if self.creds else None})"
        )

    def merged(self, **given: Unpack[OptionValues]) -> RegistryOptions:
        """These options with the values given (``None``: keep this one)."""
        # names and types are checked against OptionValues; None (keep) is dropped here
        values: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        return replace(self, **values) if values else self

    @property
    def tries(self) -> int:
        """Attempts in all for one request (``retries``, else the default)."""
        return DEFAULT_TRIES if self.retries is None else max(1, self.retries)

    @property
    def first_delay(self) -> float:
        """The wait before the second attempt (``retry_delay``, else the default)."""
        return DEFAULT_RETRY_DELAY if self.retry_delay is None else self.retry_delay


class OptionValues(TypedDict, total=False):
    """``RegistryOptions.merged``'s keywords: any field, ``None`` to keep the current value."""

    tls_verify: bool | None
    cert_dir: str | None
    authfile: str | None
    creds: str | Credential | None
    auths: Mapping[str, Credential] | None
    registries_conf: str | None
    docker_short_names: bool | None
    insecure_loopback: bool | None
    retries: int | None
    retry_delay: float | None
    retry_backoff: bool | None
    chunk_size: int | None
    monolithic_max: int | None
    timeout: float | None
    deadline: float | None
    min_blob_rate: float | None
    rate_grace: float | None
    max_manifest_size: int | None
    user_agent: str | None
    page_size: int | None
    transport: httpx.BaseTransport | None


def retry_values(
    retry: int | str | None,
    retry_delay: str | None,
    names: tuple[str, str] = ("--retry", "--retry-delay"),
) -> dict[str, Any]:
    """podman's ``--retry`` (retries after the first attempt) and ``--retry-delay`` (a Go
    duration: every wait, with no backoff) as ``RegistryOptions`` fields; none given, none.
    The one reading of them for the CLI, the API's ``retry``/``retryDelay`` and the
    ``KILN_RETRY``/``KILN_RETRY_DELAY`` settings; ``names`` name them in errors."""
    values: dict[str, Any] = {}
    if retry is not None and str(retry).strip() != "":
        text = str(retry).strip()
        if not text.isdigit():
            raise InvalidArgument(
                f'invalid {names[0]} "{text}": expected a number of retries, 0 or more'
            )
        values["retries"] = int(text) + 1  # podman counts retries, kiln attempts
    if retry_delay is not None and retry_delay.strip():
        nanos = parse_go_duration(retry_delay.strip())
        if nanos is None or nanos < 0:
            raise InvalidArgument(
                f'invalid {names[1]} "{retry_delay}": expected a duration such as "2s" or "500ms"'
            )
        values["retry_delay"], values["retry_backoff"] = nanos / 1e9, False
    return values
