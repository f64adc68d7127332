"""COPY and ADD into a rootfs, with Docker's semantics (the Dockerfile engine calls these too).

Everything that can fail on user input — missing sources, bad patterns, unknown ``--chown``
names, an unreachable URL — is checked or fetched before the first write, so a failed
COPY leaves the container as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
import tempfile
from collections.abc import Container, Iterator
from dataclasses import field

from kiln.archive.safe_root import SafeRoot
from kiln.errors import InvalidArgument, NotFound
from kiln.util.lazy_dataclass import dataclass
from kiln.util.redact import redact

from .chmod import parse_chmod
from .copier import (
    ContentHash,
    CopyOptions,
    KnownDigest,
    TreeCopier,
    ensure_dir,
    ensure_parents,
    own_made,
)
from .git_source import Checkout, GitSource, git_checkout, is_git_source, parse_git_source
from .owner import resolve_chown
from .paths import expand_source, is_dir_in, resolve_dest
from .tar_detect import extract_archive, is_archive

_CHUNK = 1 << 20


@dataclass
class CopyOutcome:
    """What one COPY/ADD copied, and its digest."""

    digest: str  # "sha256:..." over what was copied (names, types, modes, contents)
    dests: list[str] = field(default_factory=list)  # top-level destination paths written


@dataclass
class _Fetched:
    """A URL source of ADD, downloaded to a temporary file."""

    url: str
    path: str  # temporary file
    name: str  # file name from the URL path
    mtime: float | None
    sha256: str


def is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


def refuse_git_source(src: str) -> None:
    """COPY never clones: a git URL is ADD's."""
    if is_git_source(src):
        raise InvalidArgument(
            f"a git repository ({redact(src)}) is not a COPY source: use ADD for git sources"
        )


@dataclass
class _Cloned:
    """A git source of ADD, checked out."""

    source: GitSource
    checkout: Checkout


def copy_into(
    rootfs: str,
    sources: list[str],
    dest: str,
    *,
    context_dir: str,
    workdir: str = "/",
    chown: str | None = None,
    chmod: str | None = None,
    add: bool = False,
    tmpdir: str | None = None,
    keep_owner: bool = False,
    known_digest: KnownDigest | None = None,
    keep_git_dir: bool = False,
    unpack: bool | None = None,
    git_commits: dict[str, str] | None = None,
    include: Container[str] | None = None,
    urls: bool = False,
) -> CopyOutcome:
    """Copy ``sources`` (relative to ``context_dir``) to ``dest`` inside ``rootfs``.

    ``keep_owner``: without ``chown``, copied entries keep their source's uid/gid (COPY
    --from) instead of becoming 0:0. ``known_digest``: sha256 of source files already
    hashed, by their stat (the build context's checksums): those are copied in the kernel.
    ADD only: a git source is cloned and its checkout (or ``#ref:subdir``) copied into
    ``dest``, with ``.git`` if ``keep_git_dir``; ``git_commits`` (source -> commit, the
    cache key's) pins what is checked out. ``unpack`` (``ADD --unpack``): None unpacks
    local archives only; True unpacks downloaded archives too; False unpacks nothing.
    ``include``: the paths (relative to ``context_dir``) that may be copied, when an ignore
    file or ``--exclude`` filters the context; anything else below a source is skipped,
    and a wildcard never matches it. ``urls``: COPY downloads an http(s) source too, as
    buildah copy does (the file as served, never unpacked); a Dockerfile's COPY refuses one.
    """
    what = "ADD" if add else "COPY"
    if not sources:
        raise InvalidArgument(f"{what} needs at least one source and a destination")
    mode = parse_chmod(chmod) if chmod else None  # octal or symbolic, per entry
    dest_path, dest_is_dir = resolve_dest(dest, workdir)
    with (
        SafeRoot.opened(rootfs) as dst,
        _context_root(context_dir) as ctx,
        tempfile.TemporaryDirectory(prefix="kiln-add-", dir=tmpdir) as tmp,
        contextlib.ExitStack() as clones,
    ):
        owner = resolve_chown(dst, chown) if chown else None
        opts = CopyOptions(owner=owner, chmod=mode, keep_owner=keep_owner)
        plan: list[tuple[str, str | _Fetched | _Cloned]] = []  # (source, rel | fetched | clone)
        for src in sources:
            if is_git_source(src):
                if not add:
                    refuse_git_source(src)
                git = parse_git_source(src)
                checkout = clones.enter_context(git_checkout(
                    git, tmp, what=str(git), keep_git_dir=keep_git_dir,
                    commit=(git_commits or {}).get(src),
                ))  # fmt: skip
                plan.append((src, _Cloned(git, checkout)))
            elif is_url(src):
                if not (add or urls):
                    raise InvalidArgument(f"COPY cannot take a URL ({src}): use ADD for URLs")
                plan.append((src, _download(src, tmp)))
            else:
                plan += [(src, rel) for rel in expand_source(ctx, src)
                         if include is None or rel in include]  # fmt: skip
        if len(plan) > 1:
            # several sources (or a wildcard matching several) go into a directory, made
            # when missing, trailing slash or not (buildah and BuildKit; the classic
            # builder refused)
            dest_is_dir = True
        content = ContentHash()
        copier = TreeCopier(dst, opts, content, known_digest, include)
        outcome = CopyOutcome("")
        for src, item in plan:
            if isinstance(item, _Fetched):
                if unpack and _unpack_download(dst, item, dest_path, opts, content):
                    outcome.dests.append(dest_path)
                    continue
                outcome.dests.append(_place_download(dst, item, dest_path, dest_is_dir, opts))
                content.add(item.url, "url", opts.mode_for(0o600), item.sha256)
                continue
            if isinstance(item, _Cloned):
                # a repository is a directory: its files go into dest, as BuildKit's
                content.add(str(item.source), "git", 0, item.checkout.commit)
                # the checkout is not the context: neither its ignore set nor its checksums
                repo_copier = TreeCopier(dst, opts, content, None, None)
                with SafeRoot.opened(item.checkout.path) as repo:
                    outcome.dests.append(
                        _copy_local(repo, "", dst, dest_path, True, opts, repo_copier, False, src)
                    )
                continue
            unpacks = add and unpack is not False
            outcome.dests.append(
                _copy_local(ctx, item, dst, dest_path, dest_is_dir, opts, copier, unpacks, src)
            )
        outcome.digest = content.digest()
        return outcome


@contextlib.contextmanager
def _context_root(context_dir: str) -> Iterator[SafeRoot]:
    with contextlib.ExitStack() as stack:
        try:
            root = stack.enter_context(SafeRoot.opened(context_dir))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(
                f"build context {context_dir} does not exist or is not a directory"
            ) from None
        yield root


def _copy_local(
    ctx: SafeRoot,
    rel: str,
    dst: SafeRoot,
    dest_path: str,
    dest_is_dir: bool,
    opts: CopyOptions,
    copier: TreeCopier,
    add: bool,
    src: str,
) -> str:
    label = rel or "."
    if rel and not is_dir_in(ctx, rel):
        if add and is_archive(ctx, rel):
            real = ensure_dir(dst, dest_path, opts)
            # the archive's entries keep the owners recorded in it; --chown applies only to
            # the directory made for them (as buildah and BuildKit)
            digest = extract_archive(ctx, rel, dst.path, real)
            copier.hash.add(label, "archive", 0, digest)
            return dest_path
        if dest_is_dir or leads_to_dir(dst, dest_path):
            real = ensure_dir(dst, dest_path, opts)
            target = posixpath.join(real, posixpath.basename(rel))
        else:
            target = _in_parent(dst, dest_path, opts)
        copier.copy_top(ctx, rel, target, label)
        return target
    # a directory copies its contents, into where a symlink at the destination leads
    target = _in_parent(dst, dest_path, opts)
    try:
        found = dst.follow(target, create_parents=True)
    except NotADirectoryError:
        found = None
    if found is None or (found.exists and not found.is_dir):
        raise InvalidArgument(f"destination {dest_path} already exists but is not a directory")
    own_made(dst, found.created, opts)
    copier.copy_top(ctx, rel, found.path, label)
    return dest_path


def leads_to_dir(dst: SafeRoot, path: str) -> bool:
    """Whether ``path`` is a directory in the container, or a symlink leading (in-root) to one
    or to nothing yet: buildah then copies *into* the directory it makes there."""
    try:
        if not stat.S_ISLNK(dst.lstat(path).st_mode):
            return is_dir_in(dst, path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        found = dst.follow(path)
    except FileNotFoundError:
        return True  # dangling, its target's parents missing too
    except NotADirectoryError:
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return True  # ensure_dir reports the loop
        raise
    return found.is_dir or not found.exists


def _in_parent(dst: SafeRoot, path: str, opts: CopyOptions) -> str:
    """``path`` with its parent directory resolved (and made) in-root; "/" stays "/"."""
    name = posixpath.basename(path)
    if not name:
        return "/"
    return posixpath.join(ensure_parents(dst, path, opts), name)


# -- URLs --------------------------------------------------------------------------------------


def _download(url: str, tmp: str) -> _Fetched:
    """Fetch ``url`` into a temporary file (before anything is written to the rootfs)."""
    # start-up: only ADD of a URL downloads; other builds need not load this
    import urllib.parse

    from kiln.util.download import download

    name = posixpath.basename(urllib.parse.urlparse(url).path.rstrip("/"))
    path = os.path.join(tempfile.mkdtemp(dir=tmp), "download")
    fetched = download(url, path, what=f"ADD {url}")
    return _Fetched(url, path, name, fetched.last_modified, fetched.sha256)


def _unpack_download(
    dst: SafeRoot, item: _Fetched, dest_path: str, opts: CopyOptions, content: ContentHash
) -> bool:
    """``ADD --unpack=true <url>``: a downloaded archive is extracted into ``dest`` (as a
    local one is); False when the download is no archive (then it is placed as a file)."""
    folder, name = os.path.split(item.path)
    with SafeRoot.opened(folder) as got:
        if not is_archive(got, name):
            return False
        real = ensure_dir(dst, dest_path, opts)
        digest = extract_archive(got, name, dst.path, real)
    content.add(item.url, "archive", 0, digest)
    return True


def _place_download(
    dst: SafeRoot, item: _Fetched, dest_path: str, dest_is_dir: bool, opts: CopyOptions
) -> str:
    if dest_is_dir or leads_to_dir(dst, dest_path):
        if not item.name:
            raise InvalidArgument(
                f"ADD {item.url}: cannot tell a file name from the URL; "
                "give the destination a file name"
            )
        target = posixpath.join(ensure_dir(dst, dest_path, opts), item.name)
    else:
        target = _in_parent(dst, dest_path, opts)
    mode = opts.mode_for(0o600)  # a download is 0600 before --chmod
    outs: list[int] = []  # closed even if a Ctrl-C lands as it opens (``util.owned_open``)
    with open(item.path, "rb") as f:
        try:
            out = dst.open_file_for_write_into(outs, target, 0o600)
            while chunk := f.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            if opts.chown_needed:
                os.fchown(out, *opts.uid_gid)
            os.fchmod(out, mode)
            if item.mtime is not None:
                os.utime(out, (item.mtime, item.mtime))
        finally:
            for fd in outs:
                os.close(fd)
    return target
