"""Distribution-spec client: challenges, Basic/Bearer auth, credentials, registries.conf,
retries, uploads. The only user of httpx. Must not import store, image or above.

``RegistryOptions`` (``kiln.registry.options``) is a plain value that loads no httpx; the
rest is loaded on first use (start-up: a build or command that holds options but talks to
no registry never imports httpx), httpx through ``_lean_httpx`` first.

``kiln.registry.login`` is the module (``login``, ``logout``): a package attribute of a
submodule's name would be the module or the function depending on what was imported first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from kiln.registry.options import RegistryOptions

if TYPE_CHECKING:
    from kiln.registry.client import ACCEPT_ALL_MANIFESTS, RegistryClient, SearchResult
    from kiln.registry.credentials import Credential
    from kiln.registry.login import verify_login
    from kiln.registry.registries_conf import RegistriesConf
    from kiln.registry.retry import RetryPolicy

_LAZY = {
    "ACCEPT_ALL_MANIFESTS": "client",
    "RegistryClient": "client",
    "SearchResult": "client",
    "Credential": "credentials",
    "verify_login": "login",
    "RegistriesConf": "registries_conf",
    "RetryPolicy": "retry",
}

__all__ = [
    "ACCEPT_ALL_MANIFESTS",
    "Credential",
    "RegistriesConf",
    "RegistryClient",
    "RegistryOptions",
    "RetryPolicy",
    "SearchResult",
    "verify_login",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module("kiln.registry._lean_httpx")  # httpx without its CLI and trio
    value = getattr(importlib.import_module(f"kiln.registry.{module}"), name)
    globals()[name] = value
    return value
