"""API versions kiln speaks, and the ``/v{version}`` path prefix clients send."""

from __future__ import annotations

import functools
import re

from kiln.errors import InvalidArgument
from kiln.ops.system import DOCKER_API_VERSION, DOCKER_MIN_API_VERSION, LIBPOD_API_VERSION

COMPONENT_VERSION = "kiln"

_MAJOR_MINOR = re.compile(r"\d+\.\d+")
_DOCKER_PREFIX = re.compile(r"[0-9.]+")  # dockerd's router: /v{version:[0-9.]+}/...
_PREFIX = re.compile(r"^/v(?P<version>[0-9][0-9A-Za-z.\-+]*)(?P<rest>/.*)$")


@functools.lru_cache(maxsize=256)  # a client sends one version in every request's path
def _key(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        parts.append(int(digits.group()) if digits else 0)
    return tuple(parts)


def split_version(path: str) -> tuple[str | None, str]:
    """``/v1.41/images/json`` -> (``1.41``, ``/images/json``); no prefix -> (None, path)."""
    m = _PREFIX.match(path)
    if m is None:
        return None, path
    return m.group("version"), m.group("rest")


def is_docker_prefix(version: str) -> bool:
    """Is ``/v{version}`` a version prefix to dockerd's router (digits and dots)? Any other
    (``/v1.x/images/json``) leaves a path no Docker route has: 404 "page not found"."""
    return _DOCKER_PREFIX.fullmatch(version) is not None


def check_docker_version(version: str) -> None:
    """Refuse Docker API versions outside [minimum, maximum], worded as dockerd does."""
    if not _MAJOR_MINOR.fullmatch(version):
        raise InvalidArgument(f"invalid API version in the path: v{version}")
    if _key(version) < _key(DOCKER_MIN_API_VERSION):
        raise InvalidArgument(
            f"client version {version} is too old. "
            f"Minimum supported API version is {DOCKER_MIN_API_VERSION}, "
            "please upgrade your client to a newer version"
        )
    if _key(version) > _key(DOCKER_API_VERSION):
        raise InvalidArgument(
            f"client version {version} is too new. "
            f"Maximum supported API version is {DOCKER_API_VERSION}"
        )


def version_at_least(version: str | None, minimum: str) -> bool:
    """Is the request's API version ``minimum`` or newer (no version = newest)?"""
    return version is None or _key(version) >= _key(minimum)


def is_libpod(path: str) -> bool:
    return path == "/libpod" or path.startswith("/libpod/")


__all__ = [
    "DOCKER_API_VERSION",
    "DOCKER_MIN_API_VERSION",
    "LIBPOD_API_VERSION",
    "check_docker_version",
    "is_docker_prefix",
    "is_libpod",
    "split_version",
    "version_at_least",
]
