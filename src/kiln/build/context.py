"""The build context: the directory COPY/ADD read from, seen through ``.dockerignore``.

- ``BuildContext.expand(src)``: the context-relative paths a source names (wildcards
  matched per path component as Go's ``filepath.Match``; ignored paths are invisible;
  ``..`` out of the context is refused).
- ``BuildContext.digest(sources, excludes)``: one sha256 over names, types, modes and
  contents of everything the sources name. File contents come from a stat-keyed
  checksum cache (``store.get_checksums/put_checksum``: all of the context's entries are
  loaded in one query), so an unchanged context costs ``lstat`` calls, not reads.
  Modification times are not part of it (as in BuildKit).
- ``BuildContext.staged(sources, excludes, heredocs)``: a directory the copier can read
  the sources from: the context itself when nothing is filtered, else a tree of hard
  links (copies across file systems) holding only what may be copied.
- ``open_remote_context``: a context given as ``-`` (a tar, maybe compressed, on stdin)
  or an ``http(s)://`` URL of a tar, extracted safely into a temporary directory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, Protocol

from kiln.build.dockerignore import IgnoreMatcher
from kiln.build.heredoc import Heredoc
from kiln.container.paths import clean_source, has_meta, match_wildcards
from kiln.errors import InvalidArgument, NotFound, Unavailable

__all__ = ["BuildContext", "ChecksumCache", "is_remote_context", "open_remote_context"]

_CHUNK = 1 << 20
URL_TIMEOUT = 120.0


class ChecksumCache(Protocol):
    def get_checksum(self, path: str, st: os.stat_result) -> str | None: ...
    def put_checksum(self, path: str, st: os.stat_result, digest: str) -> None: ...


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


class BuildContext:
    """A local context directory plus its ignore patterns."""

    def __init__(
        self,
        root: str,
        patterns: Iterable[str] = (),
        checksums: ChecksumCache | None = None,
        tmpdir: str | None = None,
    ) -> None:
        self.root = os.path.abspath(root)
        if not os.path.isdir(self.root):
            raise NotFound(f"build context {root} is not a directory: check the path")
        self.matcher = IgnoreMatcher(list(patterns))
        self.checksums = checksums
        self.tmpdir = tmpdir
        self._memo: dict[str, tuple[tuple[int, ...], str]] = {}
        self._lock = threading.Lock()
        self._preloaded = False

    # -- paths ------------------------------------------------------------------------

    def excluded(self, rel: str, excludes: IgnoreMatcher | None = None, base: str = "") -> bool:
        """Ignored by the ignore file, or by ``excludes`` (matched against the path in the
        context and, below a copied directory ``base``, the path relative to it)."""
        if not rel:
            return False
        if self.matcher.patterns and self.matcher.matches(rel):
            return True
        if not (excludes and excludes.patterns):
            return False
        if base and rel.startswith(base + "/") and excludes.matches(rel[len(base) + 1 :]):
            return True
        return excludes.matches(rel)

    def _lstat(self, rel: str) -> os.stat_result | None:
        try:
            return os.lstat(os.path.join(self.root, rel) if rel else self.root)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _resolve_in_root(self, rel: str) -> str | None:
        """Follow symlinks of ``rel`` inside the context; None when it leaves or dangles."""
        full = os.path.realpath(os.path.join(self.root, rel))
        if full != self.root and not full.startswith(self.root + os.sep):
            return None
        return os.path.relpath(full, self.root) if full != self.root else ""

    def expand(self, src: str, excludes: IgnoreMatcher | None = None) -> list[str]:
        """The context-relative paths ``src`` names (sorted for wildcards); NotFound if none."""
        rel = clean_source(src)
        if not has_meta(rel):
            if rel and (self._lstat(rel) is None or self.excluded(rel, excludes)):
                raise NotFound(
                    f'"{src}": no such file or directory in the build context '
                    "(or excluded by .dockerignore / --exclude)"
                )
            return [rel]
        matches = match_wildcards(
            rel,
            lambda p: self._lstat(p) is not None,
            lambda p: os.listdir(os.path.join(self.root, p)),
        )
        matches = [m for m in matches if not self.excluded(m, excludes)]
        if not matches:
            raise NotFound(
                f'no source files were specified: "{src}" matches nothing in the context'
            )
        return matches

    def walk(
        self, rel: str, excludes: IgnoreMatcher | None = None, base: str | None = None
    ) -> Iterator[tuple[str, os.stat_result]]:
        """``rel`` and everything below it that is not ignored, parents first, sorted."""
        st = self._lstat(rel)
        if st is None:
            return
        base = rel if base is None else base
        yield rel, st
        if not stat.S_ISDIR(st.st_mode):
            return
        try:
            names = sorted(os.listdir(os.path.join(self.root, rel) if rel else self.root))
        except OSError as exc:
            raise InvalidArgument(f"cannot read {rel or '.'} in the build context: {exc}") from exc
        for name in names:
            child = f"{rel}/{name}" if rel else name
            if self.excluded(child, excludes, base):
                cst = self._lstat(child)
                if cst is None or not stat.S_ISDIR(cst.st_mode):
                    continue
                no_excludes = excludes is None or not excludes.patterns
                if no_excludes and self.matcher.excludes_dir_entirely(child):
                    continue
                # an exception pattern may bring back something below: look inside
                for sub, sst in self.walk(child, excludes, base):
                    if sub != child and not self.excluded(sub, excludes, base):
                        yield sub, sst
                continue
            yield from self.walk(child, excludes, base)

    # -- digests ----------------------------------------------------------------------

    def file_digest(self, rel: str, st: os.stat_result) -> str:
        """sha256 of a regular file's content, from the checksum cache when its stat matches."""
        path = os.path.join(self.root, rel)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        with self._lock:
            if not self._preloaded:
                self._preload()
            memo = self._memo.get(path)
        if memo is not None and memo[0] == key:
            return memo[1]
        digest = None
        if self.checksums is not None and not self._preloaded:
            digest = self.checksums.get_checksum(path, st)
        if digest is None:
            h = hashlib.sha256()
            try:
                with open(path, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
            except OSError as exc:
                raise InvalidArgument(f"cannot read {rel} in the build context: {exc}") from exc
            digest = "sha256:" + h.hexdigest()
            if self.checksums is not None:
                self.checksums.put_checksum(path, st, digest)
        with self._lock:
            self._memo[path] = (key, digest)
        return digest

    def _preload(self) -> None:
        """Every cached checksum under the context in one query (one per file adds up: 2,000
        files cost ~20 ms). A store without ``get_checksums`` is asked file by file."""
        get_all = getattr(self.checksums, "get_checksums", None)
        if get_all is not None:
            self._memo.update(get_all(self.root))
            self._preloaded = True

    def digest(self, sources: Iterable[str], excludes: Iterable[str] = ()) -> str:
        """One digest of everything ``sources`` name (see the module docstring)."""
        matcher = IgnoreMatcher(list(excludes)) if excludes else None
        h = hashlib.sha256()
        batch = getattr(self.checksums, "transaction", None)
        with batch() if batch is not None else contextlib.nullcontext():
            for src in sources:
                h.update(f"source {src}\n".encode())
                for top in self.expand(src, matcher):
                    for rel, st in self._walk_following_top(top, matcher):
                        h.update(self._entry_line(rel, st))
        return "sha256:" + h.hexdigest()

    def _walk_following_top(
        self, top: str, matcher: IgnoreMatcher | None
    ) -> Iterator[tuple[str, os.stat_result]]:
        st = self._lstat(top)
        if st is not None and stat.S_ISLNK(st.st_mode):
            target = self._resolve_in_root(top)
            if target is not None and self._lstat(target) is not None:
                yield top, st
                for rel, sub in self.walk(target, matcher):
                    yield top + rel[len(target) :], sub
                return
        yield from self.walk(top, matcher)

    def _entry_line(self, rel: str, st: os.stat_result) -> bytes:
        kind = _kind(st.st_mode)
        payload = ""
        if kind == "file":
            payload = self.file_digest(rel, st)
        elif kind == "symlink":
            payload = os.readlink(os.path.join(self.root, rel))
        elif kind == "other":
            payload = f"{stat.S_IFMT(st.st_mode):o}:{st.st_rdev}"
        mode = stat.S_IMODE(st.st_mode)
        return f"{rel}\0{kind}\0{mode:o}\0{payload}\n".encode("utf-8", "surrogateescape")

    # -- staging ----------------------------------------------------------------------

    def needs_staging(self, excludes: Iterable[str] = (), heredocs: Iterable[Heredoc] = ()) -> bool:
        return bool(self.matcher.patterns or tuple(excludes) or tuple(heredocs))

    @contextlib.contextmanager
    def staged(
        self,
        sources: Iterable[str],
        excludes: Iterable[str] = (),
        heredocs: Iterable[Heredoc] = (),
    ) -> Iterator[str]:
        """A directory holding exactly what ``sources`` may copy (see the module docstring)."""
        sources, excludes, heredocs = list(sources), list(excludes), list(heredocs)
        if not self.needs_staging(excludes, heredocs):
            yield self.root
            return
        matcher = IgnoreMatcher(excludes) if excludes else None
        with tempfile.TemporaryDirectory(prefix="kiln-ctx-", dir=self.tmpdir) as tmp:
            for src in sources:
                if src.startswith(("http://", "https://")):
                    continue
                for top in self.expand(src, matcher):
                    for rel, st in self._walk_following_top(top, matcher):
                        self._stage_one(tmp, rel, st)
            for doc in heredocs:
                path = os.path.join(tmp, doc.name.lstrip("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as f:
                    f.write(doc.body)
                os.chmod(path, 0o644)
            # the staging dir stands for the context root (``COPY . /x``): its mode, not 0700
            os.chmod(tmp, stat.S_IMODE(os.stat(self.root).st_mode) | 0o700)
            yield tmp

    def _stage_one(self, tmp: str, rel: str, st: os.stat_result) -> None:
        if not rel:
            return
        src = os.path.join(self.root, rel)
        dst = os.path.join(tmp, rel)
        parent = os.path.dirname(dst)
        if not os.path.isdir(parent):
            self._stage_parents(tmp, posixpath.dirname(rel))
        if os.path.lexists(dst):
            return
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(dst, stat.S_IMODE(st.st_mode) | 0o700)
            os.chmod(dst, stat.S_IMODE(st.st_mode))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISREG(st.st_mode):
            try:
                os.link(src, dst)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                shutil.copy2(src, dst)
        # sockets, devices and fifos in a context are not copied

    def _stage_parents(self, tmp: str, rel_dir: str) -> None:
        parts = [p for p in rel_dir.split("/") if p]
        for i in range(1, len(parts) + 1):
            rel = "/".join(parts[:i])
            st = self._lstat(rel)
            if st is not None and stat.S_ISDIR(st.st_mode):
                self._stage_one(tmp, rel, st)
            else:
                os.makedirs(os.path.join(tmp, rel), exist_ok=True)


# -- remote contexts --------------------------------------------------------------------


def is_remote_context(spec: str) -> bool:
    return spec == "-" or spec.startswith(("http://", "https://"))


@contextlib.contextmanager
def open_remote_context(
    spec: str, tmpdir: str | None = None, stdin: BinaryIO | None = None
) -> Iterator[str]:
    """Extract the tar ``spec`` names (``-``: stdin; or an http(s) URL) into a temp dir."""
    from kiln.archive.applier import extract_tar
    from kiln.archive.compression import open_decompressed

    with tempfile.TemporaryDirectory(prefix="kiln-context-", dir=tmpdir) as tmp:
        root = os.path.join(tmp, "context")
        os.mkdir(root, 0o755)
        if spec == "-":
            stream: Any = stdin if stdin is not None else sys.stdin.buffer
            # the docker CLI's context for `-f -` (or a Dockerfile outside the context)
            # stops right after the last entry's data; dockerd takes it, so does kiln
            with open_decompressed(stream) as data:
                extract_tar(data, root, entry_end_ok=True)
        else:
            download = os.path.join(tmp, "context.tar")
            _download(spec, download)
            with open(download, "rb") as raw, open_decompressed(raw) as data:
                extract_tar(data, root)
        yield root


def _download(url: str, path: str) -> None:
    import urllib.error  # only URL contexts pay for http.client, ssl and email
    import urllib.request

    try:
        with (
            urllib.request.urlopen(url, timeout=URL_TIMEOUT) as resp,  # noqa: S310 - http(s) only
            open(path, "wb") as out,
        ):
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise Unavailable(f"cannot fetch the build context {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unavailable(f"cannot fetch the build context {url}: {reason}") from None
