"""The build context: the directory COPY/ADD read from, seen through ``.dockerignore``.

- ``BuildContext.expand(src)``: the context-relative paths a source names (wildcards
  matched per path component as Go's ``filepath.Match``; ignored paths are invisible;
  ``..`` out of the context is refused). Paths resolve inside the context only (one
  ``SafeRoot``, as the layer applier): a symlink on the way or named as the source is
  followed as if the context were ``/`` (buildah and BuildKit do the same); one met while
  walking a directory is copied as a link. Nothing outside the context is ever read.
- ``BuildContext.digest(sources, excludes)``: one sha256 over names, types, modes and
  contents of everything the sources name. File contents come from stat-keyed
  checksums, so an unchanged context costs ``lstat`` calls, not reads. A directory
  source uses the per-directory index (:mod:`kiln.build.context_index`, one file per
  context in the store: an unchanged directory is one bytes comparison of its entries'
  stat keys and its stored lines go into the digest as they are), filtered by the ignore
  file and ``--exclude`` or not (what a filter keeps of a directory is stored with the
  filter's signature, so an unchanged one matches no pattern again; a file it skips is
  never hashed; a big directory's walk is shared with a forked helper on a second core,
  :mod:`kiln.build.context_ahead`); a single file uses the per-file rows (``store.get_checksums/
  put_checksums``: loaded in one query, new ones written in one transaction at the end)
  after the index. Modification times are not part of it (as in BuildKit).
  ``digest_unless`` stops instead of reading a big file, and ``learn`` takes the digests a
  layer writer made while reading them (a COPY written before its key:
  :mod:`kiln.build.layer_first`).

  A cached checksum is used only while the file's (device, inode, size, mtime_ns,
  ctime_ns, mode) are all unchanged. Rewriting a file with the same size and putting its
  mtime back (``touch -d``) still changes its ctime, which no program can set, so the
  file is read again. The remaining hole is git's "racy" one: a file changed again
  within the timestamp granularity of the moment it was hashed keeps the same times.
  As git does, such a checksum is not trusted: a file whose mtime or ctime is less
  than ``RACY_NS`` (2 s, more than any common file system's granularity) older than the
  moment it was hashed is not written to the cache (it is hashed again by the next
  build) and the copier does not take its digest for granted.
- ``BuildContext.included(sources, excludes)``: the set of context paths a filtered COPY
  may read; the copier reads the context itself through it (nothing staged, so no context
  file gets a new ctime from a hard link and its cached checksum stays good).
  ``BuildContext.staged(sources, excludes, heredocs)``: a directory the copier can read
  the sources from (heredoc files only need it now): the context itself when nothing is
  filtered, else a tree of hard links (copies across file systems) holding only what may
  be copied.

Contexts given as ``-`` or a URL are unpacked first: see :mod:`kiln.build.remote_context`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import posixpath
import stat
import threading
import time
from array import array
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

from kiln.archive.safe_root import SafeRoot
from kiln.build.context_index import (
    RACY_NS,
    XATTRS_MARK,
    DirIndex,
    DirRecord,
    Listing,
    list_dir,
    payload_of,
)
from kiln.build.dockerignore import IgnoreMatcher
from kiln.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from kiln.build.heredoc import Heredoc
    from kiln.build.layer_first import LearnedDigests

__all__ = [
    "BuildContext",
    "ChecksumCache",
    "read_in_context",
]

_CHUNK = 1 << 20
_SUBDIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_AT = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_MANIFEST_ENTRIES = 5000  # paths --explain can name per COPY source set
_MAX_MANIFESTS = 64


#: lines a digest keeps for its manifest (a path named twice is one entry: some slack)
_MAX_KEPT_LINES = 4 * MAX_MANIFEST_ENTRIES


def _add_entry(entries: dict[str, str], line: bytes) -> dict[str, str] | None:
    """One ``_entry_line`` into a manifest (None once it has too many entries)."""
    if len(entries) >= MAX_MANIFEST_ENTRIES:
        return None
    rel, kind, mode, payload = line.decode("utf-8", "surrogateescape").rstrip("\n").split("\0")
    short = payload.removeprefix("sha256:")[:16] if kind == "file" else payload[:200]
    entries[rel or "."] = f"{kind} {mode} {short}"
    return entries


class _Covered:
    """The lines a digest hashed, kept as they were hashed (a stored directory's lines by
    reference) and made into the manifest ``--explain`` reads only when it asks: parsing
    every line of a no-op rebuild's 2,000 files cost it ~2 ms for nothing. Keeps nothing
    once more than ``_MAX_KEPT_LINES`` lines came."""

    __slots__ = ("count", "spans")

    def __init__(self) -> None:
        self.count = 0
        #: (bytes, offsets or None, first, end): lines first..end of bytes cut at offsets
        self.spans: list[tuple[bytes, array | None, int, int]] | None = []

    def add(self, data: bytes, offsets: array | None = None, lo: int = 0, hi: int = 1) -> None:
        if self.spans is None:
            return
        self.count += hi - lo
        if self.count > _MAX_KEPT_LINES:
            self.spans = None
        else:
            self.spans.append((data, offsets, lo, hi))

    def manifest(self) -> dict[str, str] | None:
        if self.spans is None:
            return None
        entries: dict[str, str] = {}
        for data, offsets, lo, hi in self.spans:
            for i in range(lo, hi):
                line = data if offsets is None else data[offsets[i] : offsets[i + 1]]
                if _add_entry(entries, line) is None:
                    return None
        return entries


class ChecksumCache(Protocol):
    def get_checksum(self, path: str, st: os.stat_result) -> str | None: ...
    def put_checksum(self, path: str, st: os.stat_result, digest: str) -> None: ...


class BulkChecksumCache(ChecksumCache, Protocol):
    """A cache that also takes many rows in one transaction (the store's does)."""

    def put_checksums(self, rows: Iterable[tuple]) -> None: ...


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


#: the rules ``BuildContext.excluded`` applies, in the filter's signature: decisions an
#: older kiln stored in the per-directory index under other rules are not taken for these
#: (2: ``--exclude`` relative to each source only, as BuildKit; 1 also matched the path in
#: the context)
_EXCLUDE_RULES = 2

#: what a filtered walk does with an entry (as ``BuildContext.walk``): leave it out, keep
#: it, or (a directory excluded that an exception pattern may reach into) look inside only
_SKIP, _KEEP, _BELOW = 0, 1, 2


class _Filter:
    """The ignore file and ``--exclude`` patterns of one directory source ``top`` (the
    patterns relative to ``base``, by default ``top``), as ``BuildContext.walk`` applies
    them, entry by entry; ``sig`` names the filter in the per-directory index, where its
    decisions are kept."""

    def __init__(
        self, ctx: BuildContext, excludes: IgnoreMatcher | None, top: str, base: str | None = None
    ) -> None:
        self.ctx = ctx
        self.excludes = excludes
        self.base = top if base is None else base
        self.entirely = excludes is None or not excludes.patterns
        described = repr((
            [(p.text, p.exclusion) for p in ctx.matcher.patterns],
            [(p.text, p.exclusion) for p in excludes.patterns] if excludes else [],
            self.base,
            _EXCLUDE_RULES,
        ))  # fmt: skip
        self.sig = hashlib.sha256(described.encode("utf-8", "surrogateescape")).hexdigest()

    def decide(self, rel: str, is_dir: bool) -> int:
        if not self.ctx.excluded(rel, self.excludes, self.base):
            return _KEEP
        if not is_dir or (self.entirely and self.ctx.matcher.excludes_dir_entirely(rel)):
            return _SKIP
        return _BELOW


class BuildContext:
    """A local context directory plus its ignore patterns.

    Every path is resolved inside the context through one ``SafeRoot`` (the in-root
    resolver the layer applier uses): symlinks along a source's path are followed as if the
    context were ``/``, a symlink named as a source is followed the same way, and one found
    while walking a directory is a link, never followed. Files are read through that root
    with ``O_NOFOLLOW``, so one swapped for a symlink or a FIFO meanwhile is neither
    followed out nor waited on.
    """

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
        self.sr = SafeRoot(self.root)
        self.matcher = IgnoreMatcher(list(patterns))
        self.checksums = checksums
        self.tmpdir = tmpdir
        self._memo: dict[str, tuple[tuple[int, ...], str]] = {}
        # paths whose checksums are to be written in one go (their stat key and digest are
        # in _memo); a cache without put_checksums is written file by file instead
        self._new: list[str] = []
        self._bulk = hasattr(checksums, "put_checksums")
        self.racy_ns = RACY_NS
        self._started_ns = time.time_ns()  # files changed after this - racy_ns are racy
        #: the index record ``known_digest`` last looked in, with its {name: position}
        self._positions: tuple[DirRecord | None, dict[str, int]] = (None, {})
        self._lock = threading.Lock()
        self._preloaded = False
        self._index: DirIndex | None = None  # the per-directory index, loaded when first used
        # per calling thread (stages may run at once): ``digest_unless``'s size, how many
        # files this thread's digests have read (``hashed``), what ``learn`` was told
        # (``learned``: (dev, ino) -> (stat key, digest)) and the helper checking a big
        # directory source's walk ahead of it (``ahead``: :mod:`kiln.build.context_ahead`)
        self._defer = threading.local()
        # digest -> {rel: "kind mode payload"} of the digests computed, for --explain
        self._manifests: dict[str, _Covered | dict[str, str] | None] = {}

    def close(self) -> None:
        self.sr.close()

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        sr = getattr(self, "sr", None)
        if sr is not None:
            sr.close()

    # -- paths ------------------------------------------------------------------------

    def excluded(self, rel: str, excludes: IgnoreMatcher | None = None, base: str = "") -> bool:
        """Ignored by the ignore file (matched against the path in the context), or by
        ``excludes``, matched as BuildKit's copy matches ``--exclude``: against the path
        relative to the copied source ``base`` ("": the context's root), so never the
        source itself nor a path outside it."""
        if not rel:
            return False
        if self.matcher.patterns and self.matcher.matches(rel):
            return True
        if not (excludes and excludes.patterns):
            return False
        if not base:
            return excludes.matches(rel)
        return rel.startswith(base + "/") and excludes.matches(rel[len(base) + 1 :])

    def _stat(self, rel: str, follow: bool = False) -> os.stat_result | None:
        """The in-root stat of ``rel`` (its final symlink followed in-root if ``follow``);
        None when it does not exist there (or a symlink loops or dangles)."""
        try:
            return self.sr.stat(rel, follow=follow)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise

    def _lstat(self, rel: str) -> os.stat_result | None:
        return self._stat(rel)

    def is_dir(self, rel: str) -> bool:
        """Whether ``rel`` is a directory once resolved inside the context."""
        st = self._stat(rel, follow=True)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def _listdir(self, rel: str) -> list[str]:
        try:
            return self.sr.listdir(rel)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link loop on the way: nothing to match there
                raise NotADirectoryError(errno.ENOTDIR, "symbolic link loop", rel) from None
            raise

    def expand(self, src: str) -> list[str]:
        """The context-relative paths ``src`` names (sorted for wildcards); NotFound if none,
        or if one is a symlink that resolves to nothing inside the context. Only the ignore
        file hides a source: ``--exclude`` filters below each path named here, as BuildKit
        applies it (``COPY --exclude=*.txt a.txt /d/`` copies ``a.txt``)."""
        # start-up: source patterns only for COPY/ADD
        from kiln.container.paths import clean_source, has_meta, match_wildcards

        rel = clean_source(src)
        if not has_meta(rel):
            if rel and (self._lstat(rel) is None or self.excluded(rel)):
                raise NotFound(
                    f'"{src}": no such file or directory in the build context '
                    "(or excluded by .dockerignore)"
                )
            matches = [rel]
        else:
            matches = match_wildcards(rel, lambda p: self._lstat(p) is not None, self._listdir)
            matches = [m for m in matches if not self.excluded(m)]
            if not matches:
                raise NotFound(
                    f'no source files were specified: "{src}" matches nothing in the context'
                )
        for match in matches:
            if match and self._stat(match, follow=True) is None:
                raise NotFound(
                    f'"{match}" is a symbolic link that resolves to nothing inside the build '
                    "context (links are followed as if the context were /)"
                )
        return matches

    def lstat_visible(
        self, rel: str, excludes: IgnoreMatcher | None = None
    ) -> os.stat_result | None:
        """``rel``'s lstat, or None when it is missing or ignored (COPY --parents matching)."""
        if self.excluded(rel, excludes):
            return None
        return self._lstat(rel)

    def listdir(self, rel: str) -> list[str]:
        return self._listdir(rel)

    def matches_nothing(self, src: str) -> bool:
        """Whether ``src`` is a wildcard that names nothing (after the ignore file; not
        ``--exclude``, which filters below each match): such a source is skipped when
        others of the instruction exist."""
        # start-up: source patterns only for COPY/ADD
        from kiln.container.paths import clean_source, has_meta

        if not has_meta(clean_source(src)):
            return False
        try:
            self.expand(src)
        except NotFound:
            return True
        return False

    def walk(
        self,
        rel: str,
        excludes: IgnoreMatcher | None = None,
        base: str | None = None,
        *,
        follow: bool = False,
    ) -> Iterator[tuple[str, os.stat_result]]:
        """``rel`` and everything below it that is not ignored, parents first, sorted.

        ``follow``: ``rel`` itself, if a symlink, is followed inside the context (a source
        named in COPY); nothing below it ever is."""
        st = self._stat(rel, follow)
        if st is None:
            return
        yield from self._walk_from(rel, st, excludes, rel if base is None else base)

    def _children(self, rel: str) -> list[tuple[str, os.stat_result]]:
        """(name, lstat) of a directory's entries, sorted: the directory is opened in-root
        once and its entries stat'ed relative to it (one resolution per directory)."""
        try:
            dfd = self.sr.open_dir(rel)
        except OSError as exc:
            raise InvalidArgument(f"cannot read {rel or '.'} in the build context: {exc}") from exc
        try:
            out = []
            for name in sorted(os.listdir(dfd)):
                try:
                    out.append((name, os.stat(name, dir_fd=dfd, follow_symlinks=False)))
                except FileNotFoundError:
                    continue  # removed since listed
            return out
        finally:
            os.close(dfd)

    def _walk_from(
        self, rel: str, st: os.stat_result, excludes: IgnoreMatcher | None, base: str
    ) -> Iterator[tuple[str, os.stat_result]]:
        yield rel, st
        if not stat.S_ISDIR(st.st_mode):
            return
        for name, cst in self._children(rel):
            child = f"{rel}/{name}" if rel else name
            if self.excluded(child, excludes, base):
                if not stat.S_ISDIR(cst.st_mode):
                    continue
                no_excludes = excludes is None or not excludes.patterns
                if no_excludes and self.matcher.excludes_dir_entirely(child):
                    continue
                # an exception pattern may bring back something below: look inside
                for sub, sst in self._walk_from(child, cst, excludes, base):
                    if sub != child and not self.excluded(sub, excludes, base):
                        yield sub, sst
                continue
            yield from self._walk_from(child, cst, excludes, base)

    @contextlib.contextmanager
    def _reading(self, rel: str) -> Iterator[None]:
        """An entry that vanished or changed type between listing and reading: one clear
        error (the context is being modified while the build reads it)."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EINVAL):
                raise
            raise InvalidArgument(
                f"{rel} in the build context changed while the build read it: "
                "try again once it is stable"
            ) from None

    def _open_regular(self, rel: str, follow: bool) -> int:
        try:
            return self.sr.open_regular(rel, follow=follow)
        except OSError as exc:
            raise InvalidArgument(
                f"cannot read {rel} in the build context: {exc.strerror} "
                "(did it change while the build read it?)"
            ) from None

    # -- digests ----------------------------------------------------------------------

    def file_digest(self, rel: str, st: os.stat_result, follow: bool = False) -> str:
        """sha256 of a regular file's content, from the checksum cache when its stat matches."""
        path = os.path.join(self.root, rel)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        with self._lock:
            if not self._preloaded:
                self._preload()
            memo = self._memo.get(path)
        if memo is not None and memo[0] == key:
            return memo[1]
        digest = self._learned_digest(key)
        if digest is not None:
            racy = self._racy(st)
            with self._lock:
                self._memo[path] = (key, digest)
                if not racy and self._bulk:
                    self._new.append(path)
            if not racy and self.checksums is not None and not self._bulk:
                self.checksums.put_checksum(path, st, digest)
            return digest
        if not follow:  # the per-directory index holds the entry's own stat, not a target's
            parent, name = posixpath.split(rel)
            record = self._dir_index().records.get(parent)
            line = record.lookup(name, key) if record is not None else None
            if line is not None:
                digest = payload_of(line)
        if digest is None and self.checksums is not None and not self._preloaded:
            digest = self.checksums.get_checksum(path, st)
        if digest is not None:
            with self._lock:
                self._memo[path] = (key, digest)
            return digest
        self._check_defer(st)
        digest, st = self._hash_file(rel, follow)
        racy = self._racy(st)
        with self._lock:
            if not racy and self._bulk:
                self._new.append(path)
        if not racy and self.checksums is not None and not self._bulk:
            self.checksums.put_checksum(path, st, digest)
        return digest

    def _hash_file(
        self, rel: str, follow: bool = False, memo: bool = True, dfd: int = -1
    ) -> tuple[str, os.stat_result]:
        """Read and hash a regular file: its digest and the stat of the file read (recorded
        in the memo for ``known_digest`` unless ``memo`` is false: the directory index
        holds it). ``dfd``: the in-root fd of its directory, already open (the file is then
        opened by its name there, never followed: one ``openat`` instead of a resolution)."""
        h = hashlib.sha256()
        self._defer.hashed = getattr(self._defer, "hashed", 0) + 1
        fd = self._open_regular(rel, follow) if dfd < 0 else _open_in(dfd, rel)
        try:
            st = os.fstat(fd)  # the cache records the file read, not the one listed
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", rel)
            buf = bytearray(min(_CHUNK, st.st_size + 1))
            view = memoryview(buf)
            while n := os.readv(fd, [buf]):
                h.update(view[:n])
            if os.fstat(fd).st_ctime_ns != st.st_ctime_ns:
                raise OSError(errno.EINVAL, "changed while it was read", rel)
        except OSError as exc:
            raise InvalidArgument(f"cannot read {rel} in the build context: {exc}") from exc
        finally:
            os.close(fd)
        digest = "sha256:" + h.hexdigest()
        if memo:
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
            with self._lock:
                self._memo[os.path.join(self.root, rel)] = (key, digest)
        return digest, st

    def _racy(self, st: os.stat_result) -> bool:
        """Changed so recently that a change to come may leave all its times as they are."""
        return time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < self.racy_ns

    def _persist(self) -> None:
        """Write the checksums hashed since the last call, in one transaction, and the
        per-directory index if it changed."""
        put_index = getattr(self.checksums, "put_context_index", None)
        frames = None
        with self._lock:  # the records as they are now: another stage's walk may change them
            new, self._new = self._new, []
            index = self._index if self._index is not None and self._index.changed else None
            if index is not None:
                index.changed = False
                if put_index is not None:
                    frames = index.dump(self.root)
        if frames is not None and put_index is not None:
            put_index(self.root, frames)
        if new and self.checksums is not None:
            memo = self._memo
            cast(BulkChecksumCache, self.checksums).put_checksums((p, *memo[p]) for p in new)

    def learn(self, st: os.stat_result, hexdigest: str) -> None:
        """The sha256 of a context file read under ``st`` by someone else (a layer writer):
        ``digest`` takes it instead of reading the file again (and keeps it as it keeps
        the digests it makes). Until ``forget_learned``."""
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        self._learned().put(key, "sha256:" + hexdigest)

    def learned(self, st: os.stat_result) -> str | None:
        """The sha256 (hex) ``learn`` was told of the file ``st`` names, if it was that file."""
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        found = self._learned_digest(key)
        return found.removeprefix("sha256:") if found is not None else None

    def forget_learned(self) -> None:
        """Drop what ``learn`` was told in this thread (one entry a file: a big context's
        would stay for the whole build)."""
        from kiln.build.layer_first import LearnedDigests  # start-up: a COPY's only

        self._defer.learned = LearnedDigests()

    def _learned(self) -> LearnedDigests:
        """This thread's learned digests (``learn`` and a stopped ``digest_unless``)."""
        found = getattr(self._defer, "learned", None)
        if found is None:
            from kiln.build.layer_first import LearnedDigests  # start-up: a COPY's only

            found = self._defer.learned = LearnedDigests()
        return found

    def hashed_here(self) -> int:
        """How many files the calling thread's digests have read to hash them so far."""
        return int(getattr(self._defer, "hashed", 0))

    def _learned_digest(self, key: tuple[int, ...]) -> str | None:
        return self._learned().get(key)

    def _check_defer(self, st: os.stat_result) -> None:
        """In ``digest_unless``: stop before reading a file that big."""
        at = getattr(self._defer, "at", None)
        if at is not None and st.st_size >= at:
            raise _Deferred

    def known_digest(self, st: os.stat_result, label: str = "") -> str | None:
        """The sha256 (hex) of the context file ``label`` (its path as a copy names it:
        context-relative, "./..." below the context's root) if this build hashed it or found
        it in the checksum cache under exactly the stat ``st``: the copier then copies it
        without hashing it again. Looked up by path (the per-file memo, then the directory's
        index record), so that nothing per file is built for it: a map of every file by
        inode cost a COPY of 200,000 files ~100 MB."""
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        if max(st.st_mtime_ns, st.st_ctime_ns) >= self._started_ns - self.racy_ns:
            return None  # racy (see the module docstring): the copier hashes it
        rel = "" if label == "." else label.removeprefix("./")
        if not rel:
            return None
        with self._lock:
            memo = self._memo.get(os.path.join(self.root, rel))
            if memo is not None and memo[0] == key:
                return memo[1].removeprefix("sha256:")
            parent, name = posixpath.split(rel)
            record = self._index.records.get(parent) if self._index is not None else None
            if record is None:
                return None
            if self._positions[0] is not record:  # a copy asks directory by directory
                self._positions = (record, record.positions())
            line = record.line_at(self._positions[1].get(name), key)
        return None if line is None else payload_of(line).removeprefix("sha256:")

    def _preload(self) -> None:
        """Every cached checksum under the context in one query (one per file adds up: 2,000
        files cost ~20 ms). A store without ``get_checksums`` is asked file by file."""
        get_all = getattr(self.checksums, "get_checksums", None)
        if get_all is not None:
            self._memo.update(get_all(self.root))
            self._preloaded = True

    def digest_unless(
        self,
        sources: Iterable[str],
        excludes: Iterable[str] = (),
        *,
        big: int | None,
        base: str | None = None,
    ) -> str | None:
        """``digest``, or None as soon as a file of at least ``big`` bytes would have to
        be read to hash it (a COPY then writes its layer first, hashing each file in the
        same read, and ``learn`` hands the digests over: ``kiln.build.layer_first``)."""
        if big is None:
            return self.digest(sources, excludes, base=base)
        self._defer.at = big
        try:
            return self.digest(sources, excludes, base=base)
        except _Deferred:
            return None
        finally:
            self._defer.at = None

    def digest(
        self, sources: Iterable[str], excludes: Iterable[str] = (), *, base: str | None = None
    ) -> str:
        """One digest of everything ``sources`` name (see the module docstring); ``base``:
        the directory ``excludes`` are relative to (a ``COPY --parents`` pivot), else each
        source's own path."""
        matcher = IgnoreMatcher(list(excludes)) if excludes else None
        unfiltered = matcher is None and not self.matcher.patterns
        h = hashlib.sha256()
        box = _Covered()  # the manifest --explain reads
        try:
            for src in sources:
                h.update(f"source {src}\n".encode())
                for top in self.expand(src):
                    st = self._stat(top, follow=True)
                    if st is not None and stat.S_ISDIR(st.st_mode):
                        keep = None if unfiltered else _Filter(self, matcher, top, base)
                        self._digest_dir(top, st, h, box, keep)
                        continue
                    for rel, st in self.walk(top, matcher, base, follow=True):
                        with self._reading(rel):
                            line = self._entry_line(rel, st, follow=rel == top)
                        h.update(line)
                        box.add(line)
        finally:
            self._persist()  # what was hashed stays hashed, even if a later file failed
        digest = "sha256:" + h.hexdigest()
        with self._lock:
            if len(self._manifests) >= _MAX_MANIFESTS:
                self._manifests.pop(next(iter(self._manifests)))
            self._manifests[digest] = box
        return digest

    def manifest(self, digest: str) -> dict[str, str] | None:
        """What a digest this context computed covered: ``{path: "kind mode content"}``
        (content: a file's sha256 shortened, a link's target); None when unknown or when
        it named more than ``MAX_MANIFEST_ENTRIES`` paths. ``--explain`` names changed
        files from it."""
        with self._lock:
            found = self._manifests.get(digest)
            if isinstance(found, _Covered):  # made on first ask, then kept
                found = self._manifests[digest] = found.manifest()
            return found

    def _digest_dir(
        self, top: str, st: os.stat_result, h: Any, box: _Covered, keep: _Filter | None = None
    ) -> None:
        """``walk`` + ``_entry_line`` for a whole directory, the same lines in the same
        order, taken from the per-directory index (:mod:`kiln.build.context_index`)
        wherever a directory's entries kept their stat: 200,000 unchanged files cost their
        ``lstat`` and a bytes comparison per directory. ``keep``: the ignore file and
        ``--exclude`` filter the walk (what they keep of a directory is remembered in its
        record with the filter's signature: an unchanged one matches no pattern again)."""
        self._line(self._entry_line(top, st, follow=True), h, box)
        index = self._dir_index()
        try:
            dfd = self.sr.open_dir(top)
        except OSError as exc:
            raise InvalidArgument(f"cannot read {top or '.'} in the build context: {exc}") from exc
        seen: set[str] = set()
        # start-up: the walk ahead only for a directory source
        from kiln.build.context_ahead import check_ahead

        ahead = check_ahead(self.sr.fd, index, top)
        self._defer.ahead = ahead
        try:
            self._digest_children(top, dfd, h, box, index, seen, keep)
        finally:
            os.close(dfd)
            self._defer.ahead = None
            if ahead is not None:
                ahead.close()
        with self._lock:
            index.forget_below(top, seen)

    def _dir_index(self) -> DirIndex:
        with self._lock:
            if self._index is None:
                self._index = self._load_index()
            return self._index

    def _load_index(self) -> DirIndex:
        """The stored index, read a piece at a time where the store can (its own)."""
        opener = getattr(self.checksums, "open_context_index", None)
        if opener is None:
            get = getattr(self.checksums, "get_context_index", None)
            return DirIndex.load(get(self.root) if get else None, self.root)
        f = opener(self.root)
        if f is None:
            return DirIndex()
        with f:
            return DirIndex.read(f, self.root)

    @staticmethod
    def _line(line: bytes, h: Any, box: _Covered) -> None:
        h.update(line)
        box.add(line)

    @staticmethod
    def _lines(record: DirRecord, spans: array, lo: int, hi: int, h: Any, box: _Covered) -> None:
        """The stored lines of entries ``lo`` to ``hi`` (excluded) of ``record``."""
        if hi > lo:
            h.update(record.lines[spans[lo] : spans[hi]])
            box.add(record.lines, spans, lo, hi)

    def _digest_children(  # noqa: PLR0913
        self,
        rel: str,
        dfd: int,
        h: Any,
        box: _Covered,
        index: DirIndex,
        seen: set[str],
        keep: _Filter | None = None,
    ) -> None:
        record = index.records.get(rel)
        ahead = getattr(self._defer, "ahead", None)
        if record is not None and ahead is not None and ahead.unchanged(rel, record):
            seen.add(rel)  # a helper found it as recorded: its stored lines, not listed again
            if keep is None and record.complete:
                names = record.entry_names() if record.dirs else []  # only subdirs' are read
                self._digest_unchanged(rel, dfd, record, names, h, box, index, seen)
                return
            if keep is not None and self._digest_kept(
                rel, dfd, record, record.entry_names(), None, h, box, index, seen, keep
            ):
                return
        listing = list_dir(dfd, record)
        seen.add(rel)
        if record is not None and record.matches(listing):
            if record.own != listing.own:  # its names now vouched for by its own key, or not
                with self._lock:  # (a moved key also changed the parent's record)
                    record.own = listing.own
                    index.changed = True
            if keep is None and record.complete:
                self._digest_unchanged(rel, dfd, record, listing.names, h, box, index, seen)
                return
            if keep is not None and self._digest_kept(
                rel, dfd, record, listing.names, listing.stats, h, box, index, seen, keep
            ):
                return
        self._digest_changed(rel, dfd, listing, record, h, box, index, seen, keep)

    def _digest_unchanged(  # noqa: PLR0913
        self,
        rel: str,
        dfd: int,
        record: DirRecord,
        names: list[str],
        h: Any,
        box: _Covered,
        index: DirIndex,
        seen: set[str],
    ) -> None:
        """An unfiltered directory whose entries kept their stat: its stored lines."""
        spans = record.spans()
        start = 0
        for i in record.dir_indexes():  # the lines up to and including the directory's
            self._lines(record, spans, start, i + 1, h, box)
            self._subdir(rel, names[i], dfd, h, box, index, seen)  # then what is inside it
            start = i + 1
        self._lines(record, spans, start, record.count(), h, box)

    def _digest_kept(  # noqa: PLR0913
        self,
        rel: str,
        dfd: int,
        record: DirRecord,
        names: list[str],
        sts: list[os.stat_result] | None,
        h: Any,
        box: _Covered,
        index: DirIndex,
        seen: set[str],
        keep: _Filter,
    ) -> bool:
        """A filtered directory whose entries kept their stat: the stored lines of what the
        filter keeps (its decisions stored too when the record has them for this filter).
        False, with nothing hashed, when a line it needs was never stored, or when the
        filter's decisions are not stored and ``sts`` is None (not listed: a helper's)."""
        if record.sig == keep.sig and len(record.mask) == len(names):
            mask = record.mask
        elif sts is None:
            return False
        else:
            mask = bytes(keep.decide(f"{rel}/{n}" if rel else n, stat.S_ISDIR(st.st_mode))
                         for n, st in zip(names, sts, strict=True))  # fmt: skip
        spans = record.spans()
        if not record.complete and any(
            m == _KEEP and spans[i] == spans[i + 1] for i, m in enumerate(mask)
        ):
            return False
        if record.sig != keep.sig or record.mask != mask:
            with self._lock:
                record.sig, record.mask = keep.sig, mask
                index.changed = True
        dirs = set(record.dir_indexes())
        start = 0  # the first line of the run of kept entries not hashed yet
        for i, m in enumerate(mask):
            if m == _KEEP and i not in dirs:
                continue
            self._lines(record, spans, start, i + (m == _KEEP), h, box)
            start = i + 1
            if i in dirs and m != _SKIP:
                self._subdir(rel, names[i], dfd, h, box, index, seen, keep)
        self._lines(record, spans, start, len(names), h, box)
        return True

    def _digest_changed(  # noqa: PLR0913
        self,
        rel: str,
        dfd: int,
        listing: Listing,
        record: DirRecord | None,
        h: Any,
        box: _Covered,
        index: DirIndex,
        seen: set[str],
        keep: _Filter | None = None,
    ) -> None:
        """A directory whose entries changed since it was indexed (or never was): entry by
        entry, each unchanged file's checksum still taken from the index. A filtered walk
        hashes no file it skips (its line stays empty in the record)."""
        names, sts, keys = listing.names, listing.stats, listing.keys
        lines: list[bytes] = []
        dirs = array("I")
        mask = bytearray()
        trusted = keys is not None
        # a digest that may stop (``digest_unless``) keeps what it read for its next try:
        # in the index once the directory's record is stored, else in this thread's
        # learned digests (held to the step's end: a few hundred bytes a file)
        hashed: list[tuple[tuple[int, ...], str]] = []
        recorded = False
        try:
            for i, (name, st) in enumerate(zip(names, sts, strict=True)):
                child = f"{rel}/{name}" if rel else name
                mode = st.st_mode
                kept = _KEEP if keep is None else keep.decide(child, stat.S_ISDIR(mode))
                mask.append(kept)
                if stat.S_ISDIR(mode):
                    dirs.append(i)
                    xattrs = _xattrs_note(f"/proc/self/fd/{dfd}/{name}")
                    line = f"{child}\0dir\0{stat.S_IMODE(mode):o}\0{xattrs}\n".encode(
                        "utf-8", "surrogateescape"
                    )
                    if kept == _KEEP:
                        self._line(line, h, box)
                    lines.append(line)
                    if kept != _SKIP:
                        self._subdir(rel, name, dfd, h, box, index, seen, keep)
                    continue
                key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, mode)
                stored = record.lookup(name, key) if record is not None else None
                known = self._learned_digest(key) if stored is None and stat.S_ISREG(mode) else None
                if stored is not None:
                    line = stored
                elif kept == _SKIP:
                    lines.append(b"")  # not hashed: nothing reads it
                    continue
                elif known is not None:
                    known += _xattrs_note(f"/proc/self/fd/{dfd}/{name}")
                    line = f"{child}\0file\0{stat.S_IMODE(mode):o}\0{known}\n".encode(
                        "utf-8", "surrogateescape"
                    )
                    if self._racy(st):
                        trusted = False  # kept for this build only, as one it hashed
                else:
                    if stat.S_ISREG(mode):
                        self._check_defer(st)
                        with self._reading(child):
                            payload, read = self._hash_file(child, memo=False, dfd=dfd)
                        if (read.st_ino, read.st_size, read.st_mtime_ns, read.st_ctime_ns) != (
                            st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                        ):  # fmt: skip
                            trusted = False  # the file read is not the one listed
                        elif getattr(self._defer, "at", None) is not None:
                            hashed.append((key, payload))
                        payload += _xattrs_note(f"/proc/self/fd/{dfd}/{name}")
                        line = f"{child}\0file\0{stat.S_IMODE(mode):o}\0{payload}\n".encode(
                            "utf-8", "surrogateescape"
                        )
                    else:
                        with self._reading(child):
                            line = self._entry_line(child, st)
                    if self._racy(st):
                        trusted = False
                if kept == _KEEP:
                    self._line(line, h, box)
                lines.append(line)
            if trusted and keys is not None:
                self._record(index, rel, listing, lines, dirs, mask, keep)
                recorded = True
        finally:
            if hashed and not recorded:
                learned = self._learned()
                for file_key, digest in hashed:
                    learned.put(file_key, digest)

    def _record(  # noqa: PLR0913
        self,
        index: DirIndex,
        rel: str,
        listing: Listing,
        lines: list[bytes],
        dirs: array,
        mask: bytearray,
        keep: _Filter | None,
    ) -> None:
        """Store directory ``rel``'s entries as just digested in the index."""
        offsets = array("I", [0])
        total = 0
        for line in lines:
            total += len(line)
            offsets.append(total)
        new = DirRecord(listing.dev, "\0".join(listing.names), cast(bytes, listing.keys),
                        b"".join(lines), offsets.tobytes(), dirs.tobytes(),
                        sig=keep.sig if keep is not None else "",
                        mask=bytes(mask) if keep is not None else b"",
                        complete=all(lines), own=listing.own)  # fmt: skip
        with self._lock:
            index.records[rel] = new
            index.changed = True

    def _subdir(  # noqa: PLR0913
        self,
        rel: str,
        name: str,
        dfd: int,
        h: Any,
        box: _Covered,
        index: DirIndex,
        seen: set[str],
        keep: _Filter | None = None,
    ) -> None:
        child = f"{rel}/{name}" if rel else name
        with self._reading(child):
            cfd = os.open(name, _SUBDIR, dir_fd=dfd)
        try:
            self._digest_children(child, cfd, h, box, index, seen, keep)
        finally:
            os.close(cfd)

    def _entry_line(self, rel: str, st: os.stat_result, follow: bool = False) -> bytes:
        kind = _kind(st.st_mode)
        payload = ""
        if kind == "file":
            payload = self.file_digest(rel, st, follow)
            fd = self._open_regular(rel, follow)
            try:
                payload += _xattrs_note(fd)
            finally:
                os.close(fd)
        elif kind == "dir":
            try:
                fd = self.sr.open_dir(rel)
            except OSError:
                fd = -1  # unreadable: its walk says so
            if fd >= 0:
                try:
                    payload = _xattrs_note(fd)
                finally:
                    os.close(fd)
        elif kind == "symlink":
            payload = self.sr.readlink(rel)
        elif kind == "other":
            payload = f"{stat.S_IFMT(st.st_mode):o}:{st.st_rdev}"
        mode = stat.S_IMODE(st.st_mode)
        return f"{rel}\0{kind}\0{mode:o}\0{payload}\n".encode("utf-8", "surrogateescape")

    # -- staging ----------------------------------------------------------------------

    def needs_staging(self, excludes: Iterable[str] = (), heredocs: Iterable[Heredoc] = ()) -> bool:
        return bool(self.matcher.patterns or tuple(excludes) or tuple(heredocs))

    def included(
        self, sources: Iterable[str], excludes: Iterable[str] = (), *, special: bool = False
    ) -> set[str] | None:
        """What a COPY of ``sources`` may read when the ignore file or ``excludes`` filter
        the context: the context paths of the directories, regular files and links the walk
        keeps, plus the parents of each (a directory excluded but holding a re-included
        entry is made, as staging makes it). None when nothing is filtered (everything may
        be read). The copier reads the context itself through this set: nothing is staged,
        so no hard link moves a context file's ctime (which would stale its checksum).
        ``special``: FIFOs and devices are kept too (a stage's tree: COPY --from copies
        them)."""
        excludes = list(excludes)
        if not (self.matcher.patterns or excludes):
            return None
        matcher = IgnoreMatcher(excludes) if excludes else None
        keep: set[str] = set()
        for src in sources:
            if src.startswith(("http://", "https://")):
                continue
            for top in self.expand(src):
                for rel, st in self.walk(top, matcher, follow=True):
                    if not (special or stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)
                            or stat.S_ISLNK(st.st_mode)):  # fmt: skip
                        continue  # sockets, devices and fifos of a context are not copied
                    keep.add(rel)
                    parent = posixpath.dirname(rel)
                    while parent and parent not in keep:
                        keep.add(parent)
                        parent = posixpath.dirname(parent)
        return keep

    @contextlib.contextmanager
    def staged(
        self,
        sources: Iterable[str],
        excludes: Iterable[str] = (),
        heredocs: Iterable[Heredoc] = (),
        *,
        always: bool = False,
        base: str | None = None,
    ) -> Iterator[str]:
        """A directory holding exactly what ``sources`` may copy (see the module docstring
        and ``kiln.build.staging``: both sides in-root, nothing followed); ``always``:
        a staged tree even when nothing is filtered (COPY --parents); ``base``: the
        directory ``excludes`` are relative to (a ``--parents`` pivot), else each source's
        own path."""
        sources, excludes, heredocs = list(sources), list(excludes), list(heredocs)
        if not always and not self.needs_staging(excludes, heredocs):
            yield self.root
            return
        # start-up: staging only for a filtered COPY or a heredoc
        import tempfile

        from kiln.build.staging import Stager

        matcher = IgnoreMatcher(excludes) if excludes else None
        with (
            tempfile.TemporaryDirectory(prefix="kiln-ctx-", dir=self.tmpdir) as tmp,
            SafeRoot.opened(tmp) as dst,
        ):
            with Stager(self.sr, dst, self._lstat) as stager:
                for src in sources:
                    if src.startswith(("http://", "https://")):
                        continue
                    for top in self.expand(src):
                        for rel, st in self.walk(top, matcher, base, follow=True):
                            with self._reading(rel):
                                stager.stage(rel, st, follow=rel == top)
            for doc in heredocs:
                name = doc.name.lstrip("/")
                parent = posixpath.dirname(name)
                if parent:
                    dst.makedirs(parent)
                dst.write_file(name, io.BytesIO(doc.body.encode("utf-8")), 0o644)
            # the staging dir stands for the context root (``COPY . /x``): its mode, not 0700
            os.chmod(tmp, stat.S_IMODE(os.stat(self.root).st_mode) | 0o700)
            yield tmp


class _Deferred(Exception):
    """``digest_unless`` met a file it was asked not to read."""


def _xattrs_note(path: str | int) -> str:
    """What a digest line adds for the xattrs a copy keeps (``kiln.container.copier``;
    ``path`` not followed, or an fd): "" when there are none, as for every entry before
    they were kept. An entry gone meanwhile has none here: the walk notices it as it
    notices any entry swapped under it (its open or its stat check)."""
    from kiln.archive.changes import read_xattrs  # start-up: a COPY's only

    try:
        xattrs = read_xattrs(path, overlay=True)
    except (FileNotFoundError, NotADirectoryError):
        return ""
    if not xattrs:
        return ""
    return XATTRS_MARK + ",".join(f"{k}={v.hex()}" for k, v in sorted(xattrs.items()))


def _open_in(dfd: int, rel: str) -> int:
    """Open the regular file ``rel`` by its last component in its directory ``dfd``, never
    following a link and never waiting on a FIFO (a file swapped meanwhile is refused by
    the caller's type check, not followed)."""
    try:
        return os.open(posixpath.basename(rel), _READ_AT, dir_fd=dfd)
    except OSError as exc:
        raise InvalidArgument(
            f"cannot read {rel} in the build context: {exc.strerror} "
            "(did it change while the build read it?)"
        ) from None


def read_in_context(
    root: str, rel: str, what: str = "the Dockerfile", limit: int = 2 * 1024 * 1024
) -> str:
    """The text of the file ``rel`` names inside the context ``root`` (the API's Dockerfile).

    ``rel`` is a path in the context; an absolute one is taken from the context's root,
    as dockerd and podman do (``podman --remote build -f /elsewhere/Containerfile`` puts
    that file in the tar under its absolute name), never from the host's. One climbing out
    with ``..`` is refused, and so is a symlink on its way that leads out (absolute, or
    ``..`` above the root): InvalidArgument, worded without anything read. A missing file
    is NotFound."""
    norm = posixpath.normpath(rel.lstrip("/")) if rel.strip("/") else ""
    if not norm or norm == ".." or norm.startswith("../"):
        raise InvalidArgument(
            f"{what} {rel!r} is not inside the build context: "
            "name it by its path relative to the context's root"
        )
    with SafeRoot.opened(root) as sr:
        try:
            fd = sr.open_regular(norm, follow=True, beneath=True)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{what} {rel!r} does not exist in the build context") from None
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                reason = "it is a symbolic link (or under one) that leads outside the context"
            elif exc.errno == errno.ELOOP:
                reason = "its symbolic links loop"
            else:
                reason = "it is not a regular file"
            raise InvalidArgument(f"{what} {rel!r} cannot be used: {reason}") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)  # past the limit: the caller's size check refuses it
    if len(data) > limit:
        return data.decode("utf-8", "replace")  # over the limit: the size check says so
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"{what} {rel!r} is not UTF-8 text") from None
