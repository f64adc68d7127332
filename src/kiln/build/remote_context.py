"""Build contexts that are not a directory: ``-`` (stdin), ``http(s)://`` URLs of a tar, and
git repositories (``https://host/repo.git#ref:subdir``, ``git@host:repo``, ``file://`` ...).

Each is unpacked safely (the layer applier's in-root writes) into a temporary
directory that lives as long as the build. On stdin comes either a tar of the
context (maybe compressed; the docker CLI's, which may stop right after the last
entry's data, is accepted as dockerd does) or, as ``docker build - < Dockerfile``
and ``podman build -`` take it, a Dockerfile alone: the context is then empty. A git
repository is cloned (:mod:`kiln.container.git_source`) into that same directory; the
context is its checkout, or ``subdir``, without ``.git`` unless ``keep_git_dir`` (BuildKit's
``BUILDKIT_CONTEXT_KEEP_GIT_DIR``).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from kiln.build.parser import MAX_DOCKERFILE_BYTES
from kiln.errors import InvalidArgument

if TYPE_CHECKING:
    from kiln.archive.streams import ByteReader

__all__ = ["is_remote_context", "open_remote_context"]

_BLOCK = 512


def is_remote_context(spec: str) -> bool:
    return spec == "-" or spec.startswith(("http://", "https://")) or is_git_context(spec)


def is_git_context(spec: str) -> bool:
    if "://" not in spec and not spec.startswith("git@"):
        return False  # a local path, as most contexts are: no git source can be one
    # start-up: the git code only for a URL-like context
    from kiln.container.git_source import is_git_source

    return is_git_source(spec, local=True)


@contextlib.contextmanager
def open_remote_context(
    spec: str,
    tmpdir: str | None = None,
    stdin: BinaryIO | None = None,
    *,
    keep_git_dir: bool = False,
) -> Iterator[str]:
    """Unpack the context ``spec`` names (``-``: stdin; an http(s) URL of a tar; a git
    repository) into a temporary directory and yield its path."""
    import tempfile  # start-up: as what follows

    # start-up: a local context (every build checks) needs none of the unpacking
    from kiln.archive.applier import extract_tar
    from kiln.archive.compression import open_decompressed, read_up_to
    from kiln.container.git_source import git_checkout, parse_git_source

    with tempfile.TemporaryDirectory(prefix="kiln-context-", dir=tmpdir) as tmp:
        if is_git_context(spec):
            git = parse_git_source(spec)
            what = f"the build context {git}"
            with git_checkout(git, tmp, what=what, keep_git_dir=keep_git_dir) as checkout:
                yield checkout.path
            return
        root = os.path.join(tmp, "context")
        os.mkdir(root, 0o755)
        if spec == "-":
            stream: Any = stdin if stdin is not None else sys.stdin.buffer
            with open_decompressed(stream) as data:
                head = read_up_to(data, _BLOCK)
                if _is_tar_header(head):
                    extract_tar(_Prepended(head, data), root, entry_end_ok=True)
                else:
                    _write_dockerfile(head, data, root)
        else:
            download = os.path.join(tmp, "context.tar")
            _download(spec, download)
            with open(download, "rb") as raw, open_decompressed(raw) as data:
                extract_tar(data, root)
        yield root


def _is_tar_header(block: bytes) -> bool:
    if len(block) < _BLOCK or not block.strip(b"\0"):
        return len(block) == _BLOCK  # an empty tar (end-of-archive blocks) is a tar
    import tarfile  # start-up: only a context on stdin is sniffed

    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _write_dockerfile(head: bytes, data: ByteReader, root: str) -> None:
    text = head + data.read(MAX_DOCKERFILE_BYTES + 1 - len(head))
    if len(text) > MAX_DOCKERFILE_BYTES:
        raise InvalidArgument(
            "stdin is neither a tar of the build context nor a Dockerfile under the "
            f"{MAX_DOCKERFILE_BYTES // (1024 * 1024)} MiB limit"
        )
    if b"\0" in text:
        raise InvalidArgument(
            "stdin is neither a tar of the build context nor a Dockerfile: "
            "give a tar (maybe compressed) or the text of a Containerfile"
        )
    with open(os.path.join(root, "Dockerfile"), "wb") as f:
        f.write(text)


class _Prepended(io.RawIOBase):
    """``head`` followed by the rest of ``stream`` (the bytes sniffed, given back)."""

    def __init__(self, head: bytes, stream: ByteReader):
        super().__init__()
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(b))
        b[: len(data)] = data
        return len(data)


def _download(url: str, path: str) -> None:
    from kiln.util.download import download  # lazy: start-up cost, only URL contexts

    download(url, path, what=f"the build context {url}")
