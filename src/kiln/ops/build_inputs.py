"""What a build reads before it runs: its context directory (a directory, ``-`` for a tar
on stdin or the API's body, an http(s) URL of a tar, a git repository) and its
Containerfile(s) (``-f`` paths, the context's ``Containerfile`` then ``Dockerfile``, the
text given, or for the API files read in-root from the context)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TextIO

from kiln.build.context import read_in_context
from kiln.build.options import BuildOptions
from kiln.build.parser import MAX_DOCKERFILE_BYTES, read_capped, read_dockerfile
from kiln.build.remote_context import is_git_context, is_remote_context, open_remote_context
from kiln.errors import InvalidArgument, NotFound
from kiln.ops.context import Context

__all__ = [
    "DEFAULT_FILES",
    "context_dir",
    "containerfile",
    "find_dockerfile",
    "is_git_context",
    "open_remote_context",
    "read_containerfile",
]

DEFAULT_FILES = ("Containerfile", "Dockerfile")


def find_dockerfile(root: str, given: list[str]) -> list[str]:
    """The Dockerfile paths: as given (relative to the cwd, else to the context), or the
    context's ``Containerfile``, else its ``Dockerfile``."""
    if given:
        found = []
        for path in given:
            # not only regular files: -f <(generate) is a pipe, as podman reads it
            in_context = os.path.join(root, path)  # path when absolute
            if not os.path.exists(path) and os.path.exists(in_context):
                path = in_context
            if os.path.isdir(path):
                raise InvalidArgument(f"the Containerfile {path} is a directory: check -f")
            if not os.path.exists(path):
                raise NotFound(f"the Containerfile {path} does not exist: check -f")
            found.append(os.path.abspath(path))
        return found
    for name in DEFAULT_FILES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return [path]
    raise NotFound(
        f"no Containerfile or Dockerfile found in the context directory {root}: add one or pass -f"
    )


@contextlib.contextmanager
def context_dir(ctx: Context, opts: BuildOptions) -> Iterator[str]:
    """The build context as a directory while the block runs (a remote one is fetched
    into the build's scratch directory and removed afterwards)."""
    if is_remote_context(opts.context):
        keep_git = opts.build_args.get("BUILDKIT_CONTEXT_KEEP_GIT_DIR", "") not in ("", "0")
        with open_remote_context(
            opts.context, opts.tmpdir or ctx.tmpdir, stdin=opts.context_stream,
            keep_git_dir=keep_git,
        ) as root:  # fmt: skip
            yield root
        return
    if not os.path.isdir(opts.context):
        raise NotFound(f"the build context {opts.context} is not a directory: check the path")
    yield os.path.abspath(opts.context)


def containerfile(root: str, opts: BuildOptions) -> tuple[list[str], str, str]:
    """(paths, text, name) of the build's Containerfile(s) in context ``root``."""
    if opts.dockerfile_text is not None:
        return [], opts.dockerfile_text, "Containerfile"
    if opts.dockerfile_in_context:
        paths, text = _read_in_context(root, opts.dockerfiles)
        return paths, text, os.path.basename(paths[0])
    paths = find_dockerfile(root, opts.dockerfiles)
    return paths, _read(paths), os.path.basename(paths[0])


def read_containerfile(stream: TextIO, name: str) -> str:
    """A Containerfile given on a stream (``-f -``), within the parser's size cap."""
    return read_capped(stream, name)


def _read_in_context(root: str, given: list[str]) -> tuple[list[str], str]:
    """The API's Dockerfiles: (paths inside ``root``, their text), each read in-root."""
    if not given:
        for default in DEFAULT_FILES:
            try:
                return [os.path.join(root, default)], read_in_context(
                    root, default, limit=MAX_DOCKERFILE_BYTES
                )
            except NotFound:
                continue
        raise InvalidArgument(
            "no Containerfile or Dockerfile found in the build context: add one or pass dockerfile"
        )
    texts = []
    for rel in given:
        try:
            texts.append(read_in_context(root, rel, limit=MAX_DOCKERFILE_BYTES))
        except NotFound as exc:
            raise InvalidArgument(str(exc)) from None  # a bad request parameter: 400
    norms = [os.path.normpath(rel) for rel in given]
    return [os.path.join(root, rel) for rel in norms], "\n".join(texts)


def _read(paths: list[str]) -> str:
    return "\n".join(read_dockerfile(path) for path in paths)
