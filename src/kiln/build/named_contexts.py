"""Additional named build contexts: ``--build-context NAME=VALUE`` (buildah's and BuildKit's).

A value is a local directory, an http(s) URL of a tar or a git repository (unpacked or
cloned as the main context is)
or an image (``container-image://REF``, ``docker-image://REF`` or ``docker://REF``). A
Dockerfile names one where it could name a stage or an image — ``FROM NAME``,
``COPY --from=NAME``, ``RUN --mount=from=NAME`` — and a named context wins over a stage and
an image of the same name, as buildah documents the order. A directory is read as the main
context is (in-root, its symlinks never followed out), without an ignore file.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping

from kiln.build.remote_context import is_git_context, open_remote_context
from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass

__all__ = ["NamedContext", "open_named_contexts", "parse_build_context"]

IMAGE_PREFIXES = ("container-image://", "docker-image://", "docker://")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.:/@-]*$")


@dataclass(frozen=True)
class NamedContext:
    """One --build-context: a directory or an image."""

    name: str
    directory: str | None = None  # a local directory (or an unpacked URL's tar)
    image: str | None = None  # an image reference


def parse_build_context(spec: str) -> tuple[str, str]:
    """``NAME=VALUE`` -> (name, value); a clear error for anything else."""
    name, sep, value = spec.partition("=")
    if not sep or not name or not value:
        raise InvalidArgument(
            f"--build-context {spec!r}: use NAME=VALUE (a directory, an http(s) URL of a tar, "
            "or container-image://IMAGE)"
        )
    if not _NAME.match(name):
        raise InvalidArgument(f"--build-context {spec!r}: {name!r} is not a valid context name")
    return name, value


def _classify(name: str, value: str) -> NamedContext | None:
    """The context for a directory or image value; None for a URL (unpacked by the caller)."""
    for prefix in IMAGE_PREFIXES:
        if value.startswith(prefix):
            ref = value[len(prefix) :]
            if not ref:
                raise InvalidArgument(f"--build-context {name}={value}: the image is missing")
            return NamedContext(name, image=ref)
    if value.startswith(("http://", "https://")) or is_git_context(value):
        return None  # a tar to download or a repository to clone
    if "://" in value:
        raise InvalidArgument(
            f"--build-context {name}={value}: unknown kind of context; use a directory, a git "
            "repository, an http(s) URL of a tar or container-image://IMAGE"
        )
    if not os.path.isdir(value):
        raise InvalidArgument(
            f"--build-context {name}={value}: no such directory (a local context must be a "
            "directory)"
        )
    return NamedContext(name, directory=os.path.abspath(value))


@contextlib.contextmanager
def open_named_contexts(
    specs: Mapping[str, str], tmpdir: str | None = None
) -> Iterator[dict[str, NamedContext]]:
    """Every named context ready to read, keyed by its name as the Dockerfile writes it;
    URLs are downloaded and unpacked for the duration."""
    with contextlib.ExitStack() as stack:
        found: dict[str, NamedContext] = {}
        for name, value in specs.items():
            parse_build_context(f"{name}={value}")
            named = _classify(name, value)
            if named is None:
                root = stack.enter_context(open_remote_context(value, tmpdir))
                named = NamedContext(name, directory=root)
            found[name] = named
        yield found
