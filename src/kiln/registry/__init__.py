"""Distribution-spec client: challenges, Basic/Bearer auth, credentials, registries.conf,
retries, uploads. The only user of httpx. Must not import store, image or above."""

from kiln.registry import _lean_httpx  # noqa: F401 - first: httpx without its CLI and trio
from kiln.registry.client import (
    ACCEPT_ALL_MANIFESTS,
    RegistryClient,
    RegistryOptions,
    SearchResult,
)
from kiln.registry.credentials import Credential
from kiln.registry.login import login, logout, verify_login
from kiln.registry.registries_conf import RegistriesConf
from kiln.registry.retry import RetryPolicy

__all__ = [
    "ACCEPT_ALL_MANIFESTS",
    "Credential",
    "RegistriesConf",
    "RegistryClient",
    "RegistryOptions",
    "RetryPolicy",
    "SearchResult",
    "login",
    "verify_login",
    "logout",
]
