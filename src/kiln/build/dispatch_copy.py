"""COPY and ADD: from the context (through ``.dockerignore`` and ``--exclude``), from a
stage, an image or a stage index (``--from``), heredoc files, and ADD's URLs (verified with
``--checksum``) and local tar extraction.

The cache key holds the expanded instruction and the content digest of the sources
(context: the stat-keyed checksum cache; ``--from``: the source image's ID, its
``--exclude`` patterns applied as the context's are: ``kiln.build.copy_from_exclude``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from kiln.archive.entry import TarEntry
from kiln.archive.safe_root import SafeRoot
from kiln.build.copy_from_exclude import from_included
from kiln.build.copy_parents import combined_digest, group_by_pivot, staged_from_root
from kiln.build.dockerignore import IgnoreMatcher
from kiln.build.history import created_by
from kiln.build.instructions import Add, Copy
from kiln.build.layer_first import WriteFirst
from kiln.build.stage_run import StageRun
from kiln.container import Builder
from kiln.container.copy_add import is_url, refuse_git_source
from kiln.container.git_source import git_checkout, is_git_source, parse_git_source, resolve_commit
from kiln.container.paths import escape_meta
from kiln.errors import DigestMismatch, InvalidArgument, KilnError, ProcessFailed
from kiln.util.redact import redact

if TYPE_CHECKING:
    from kiln.build.context import BuildContext
    from kiln.build.copy_claims import Claims
    from kiln.build.services import BuildServices
    from kiln.container.copier import KnownDigest

__all__ = ["dispatch_copy"]

CopyT = TypeVar("CopyT", bound=Copy | Add)


def dispatch_copy(run: StageRun, build: BuildServices, instr: Copy | Add) -> None:
    expanded, used = run.expand(instr)
    assert isinstance(expanded, Copy | Add)
    where = f"{build.dockerfile_name}:{instr.line}"
    parents = isinstance(expanded, Copy) and expanded.parents
    if parents and expanded.contents:
        raise InvalidArgument(f"{where}: COPY --parents does not take heredoc sources")
    from_ref = expanded.from_ if isinstance(expanded, Copy) else None
    context = build.named_dir(from_ref) or build.context
    named_context = from_ref if context is not build.context else None
    if named_context is not None:
        from_ref = None  # a named directory is read as the main context is
    if not isinstance(expanded, Add):
        with located(where, instr.name):
            for source in expanded.sources:
                refuse_git_source(source)
    if not isinstance(expanded, Add) and any(is_url(s) for s in expanded.sources):
        raise InvalidArgument(
            f"{where}: COPY does not take URLs; use ADD for {expanded.sources[0]}"
        )
    if from_ref is None and not parents:
        expanded = _skip_empty_wildcards(context, expanded)
    # nothing later reads the files: the layer may come straight from the context (or the
    # tree --from names)
    from kiln.build.copy_direct import direct_enabled, read_later  # start-up: see direct()

    direct_ok = (
        named_context is None and not parents and not expanded.contents
        and direct_enabled(build.opts.direct_copy) and build.snapshot_driver == "overlay"
        and not read_later(build.plan, run.stage, instr)
    )  # fmt: skip
    first: WriteFirst | None = None
    files: dict[str, str] = {}
    from_images: dict[str, str] = {}
    local = [s for s in expanded.sources if not _remote(s)]
    groups: dict[str, list[str]] = {}
    commits: dict[str, str] = {}
    with located(where, instr.name):
        if from_ref:
            from_images[from_ref] = build.ref_image(from_ref)
            if expanded.excludes:
                IgnoreMatcher(list(expanded.excludes))  # a bad pattern fails before any work
                # keys of an older kiln, which copied the excluded files (or matched the
                # patterns against each path in the tree too), are not this layer's
                files["from-excludes"] = "below each source"
        elif parents:
            assert isinstance(expanded, Copy)
            matcher = IgnoreMatcher(list(expanded.excludes)) if expanded.excludes else None
            groups = group_by_pivot(
                local, lambda p: context.lstat_visible(p, matcher), context.listdir
            )
            files["context"] = _parents_digest(context, groups, expanded.excludes)
            if context is not build.context:
                files["named-context"] = expanded.from_ or ""
        elif local:
            digest = context.digest_unless(local, expanded.excludes,
                                           big=(build.opts.write_first_at or None) if direct_ok and run.layers
                                           else None)  # fmt: skip
            if digest is not None:
                files["context"] = digest
            else:  # a big file not hashed yet: hashed as the layer is written, then keyed
                first = WriteFirst(
                    key_files=lambda: {"context": context.digest(local, expanded.excludes)},
                    learn=context.learn, learned=context.learned,
                    forget=context.forget_learned, known=context.known_digest,
                    hashed=context.hashed_here,
                )  # fmt: skip
            if named_context is not None:
                files["named-context"] = named_context
        if isinstance(expanded, Add):
            # a git source's key is the commit it resolves to now (and its subdir), as
            # BuildKit's: a branch that moved is a miss, an unchanged one a hit
            for src in (s for s in expanded.sources if is_git_source(s)):
                commits[src] = _git_commit(src, expanded.checksum, build.tmpdir)
                files[f"git:{src}"] = commits[src]
        if isinstance(expanded, Add) and not expanded.checksum:
            for url in (s for s in expanded.sources if _plain_url(s)):
                files[f"url:{url}"] = _url_content_digest(url, build.tmpdir)

    def action(b: Builder) -> str:
        with located(where, instr.name):
            if parents:
                assert isinstance(expanded, Copy)
                digest = _copy_parents(build, b, expanded, from_ref, context, groups)
            else:
                digest = _copy(build, b, expanded, from_ref, context, commits)
        return summary_of(digest)

    def summary_of(digest: str) -> str:
        kind = "file" if len(expanded.sources) + len(expanded.contents) == 1 else "multi"
        if kind == "file" and local and from_ref is None:
            kind = "dir" if context.is_dir(local[0].lstrip("/")) else "file"
        return created_by(instr, content_summary=f"{kind}:{digest.removeprefix('sha256:')}")

    def direct(
        view: str, below: Claims | None, workdir: str, wanted: list[tuple[str, str]],
        known: KnownDigest | None, held: contextlib.ExitStack,
    ) -> tuple[str, Iterator[TarEntry], Claims] | None:  # fmt: skip
        # start-up: only a COPY/ADD that misses the cache lists a layer
        from kiln.build.copy_direct import plan_direct

        if from_ref:  # the other tree stays mounted until the layer is written
            source = held.enter_context(build.open_ref_root(from_ref))
            try:
                include = from_included(source, expanded.sources, expanded.excludes)
            except KilnError:
                return None  # the materialising path reports it, with the line
            known = None  # the context's digests are not of its files
        else:
            source, include = context.root, context.included(local, expanded.excludes)
            known = known or context.known_digest
        layer = plan_direct(view, source, expanded, workdir=workdir, known_digest=known,
                            include=include, wanted_dirs=wanted, keep_owner=bool(from_ref),
                            below=below)  # fmt: skip
        return None if layer is None else (summary_of(layer.digest), layer.entries, layer.claims)

    run.layer_step(expanded, action, direct=direct if direct_ok else None, first=first,
                   files=files, from_images=from_images)  # fmt: skip


def _skip_empty_wildcards(context: BuildContext, instr: CopyT) -> CopyT:
    """``COPY f nothing* /d/``: a wildcard that matches nothing is skipped when another
    source of the instruction names something, as buildah and BuildKit do; alone, it is
    the usual "no source files" error."""
    empty = {s for s in instr.sources if not _remote(s) and context.matches_nothing(s)}
    if not empty or len(empty) == len(instr.sources) + len(instr.contents):
        return instr
    return dataclasses.replace(instr, sources=tuple(s for s in instr.sources if s not in empty))


def _remote(source: str) -> bool:
    return is_url(source) or is_git_source(source)


def _plain_url(source: str) -> bool:
    return is_url(source) and not is_git_source(source)


def _copy(
    build: BuildServices,
    b: Builder,
    instr: Copy | Add,
    from_ref: str | None,
    context: BuildContext,
    commits: dict[str, str],
) -> str:
    sources = list(instr.sources) + [h.name for h in instr.contents]
    add = isinstance(instr, Add)
    if from_ref:
        with build.open_ref_root(from_ref) as root:
            fn = b.add if add else b.copy
            out = fn(sources, instr.dest, from_root=root, chown=instr.chown, chmod=instr.chmod,
                     tmpdir=build.tmpdir, keep_owner=True,
                     include=from_included(root, instr.sources, instr.excludes))  # fmt: skip
        return out.digest
    urls = [s for s in instr.sources if _plain_url(s)]
    checksum = instr.checksum if isinstance(instr, Add) else None
    if checksum and not urls and not commits:
        raise InvalidArgument("ADD --checksum needs an http(s) or git source")
    extra: dict = {}
    if isinstance(instr, Add):
        extra = {"keep_git_dir": instr.keep_git_dir, "unpack": instr.unpack,
                 "git_commits": commits}  # fmt: skip
    local = [s for s in instr.sources if not _remote(s)]
    include = None
    staging: contextlib.AbstractContextManager[str]
    if instr.contents:  # heredoc files: a staged tree holds them beside the sources
        staging = context.staged(local, instr.excludes, instr.contents)
    else:  # the context itself, read through the set of what may be copied
        include = context.included(local, instr.excludes)
        staging = contextlib.nullcontext(context.root)
    with staging as root:
        if checksum and urls:
            with tempfile.TemporaryDirectory(prefix="kiln-add-", dir=build.tmpdir) as tmp:
                names = [_fetch_verified(u, checksum, tmp) for u in urls]
                # verified downloads are files, unless --unpack=true asks for their contents
                put = b.add if extra.get("unpack") else b.copy
                out = put(names, instr.dest, context_dir=tmp, chown=instr.chown,
                          chmod=instr.chmod, tmpdir=build.tmpdir)  # fmt: skip
                rest = [s for s in sources if not _plain_url(s)]
                if rest:
                    out = b.add(rest, instr.dest, context_dir=root, chown=instr.chown,
                                chmod=instr.chmod, tmpdir=build.tmpdir,
                                known_digest=context.known_digest, include=include,
                                **extra)  # fmt: skip
            return out.digest
        if add:
            out = b.add(sources, instr.dest, context_dir=root, chown=instr.chown,
                        chmod=instr.chmod, tmpdir=build.tmpdir, known_digest=context.known_digest,
                        include=include, **extra)  # fmt: skip
        else:
            out = b.copy(sources, instr.dest, context_dir=root, chown=instr.chown,
                         chmod=instr.chmod, tmpdir=build.tmpdir, known_digest=context.known_digest,
                         include=include)  # fmt: skip
    return out.digest


def _copy_parents(
    build: BuildServices,
    b: Builder,
    instr: Copy,
    from_ref: str | None,
    context: BuildContext,
    groups: dict[str, list[str]],
) -> str:
    """COPY --parents: each pivot's matches staged, then copied into the destination
    (a directory, whatever its spelling), keeping their paths below the pivot."""
    dest = instr.dest if instr.dest.endswith("/") else instr.dest + "/"
    digests = []
    if from_ref:
        matcher = IgnoreMatcher(list(instr.excludes)) if instr.excludes else None
        with build.open_ref_root(from_ref) as root:
            with SafeRoot.opened(root) as sr:
                groups = group_by_pivot(
                    list(instr.sources), _in_root_lstat(sr, matcher), lambda p: sr.listdir(p or "/")
                )
            for pivot, paths in groups.items():
                with staged_from_root(root, paths, build.tmpdir, matcher, pivot) as tree:
                    out = b.copy([escape_meta(pivot) or "."], dest, context_dir=tree,
                                 chown=instr.chown, chmod=instr.chmod, tmpdir=build.tmpdir,
                                 keep_owner=True)  # fmt: skip
                digests.append(out.digest)
        return combined_digest(digests)
    for pivot, paths in groups.items():
        staged = context.staged(
            [escape_meta(p) for p in paths], instr.excludes, always=True, base=pivot
        )
        with staged as tree:
            out = b.copy([escape_meta(pivot) or "."], dest, context_dir=tree, chown=instr.chown,
                         chmod=instr.chmod, tmpdir=build.tmpdir)  # fmt: skip
        digests.append(out.digest)
    return combined_digest(digests)


def _parents_digest(
    context: BuildContext, groups: dict[str, list[str]], excludes: Sequence[str]
) -> str:
    """The context digest of a COPY --parents: its pivots' matches, ``excludes`` relative
    to each pivot as BuildKit applies them (without patterns, or with one pivot, one
    digest of all the matches, as before)."""
    if len(groups) > 1 and excludes:
        return combined_digest([
            context.digest([escape_meta(p) for p in paths], excludes, base=pivot)
            for pivot, paths in groups.items()
        ])  # fmt: skip
    every = [escape_meta(p) for paths in groups.values() for p in paths]
    return context.digest(every, excludes, base=next(iter(groups)) if excludes else None)


def _in_root_lstat(sr: SafeRoot, excludes: IgnoreMatcher | None = None):
    """The lstat of a path in the tree, None when missing or ``excludes`` match it (as
    ``BuildContext.lstat_visible`` for the context)."""

    def lstat(rel: str) -> os.stat_result | None:
        if rel and excludes is not None and excludes.patterns and excludes.matches(rel):
            return None
        try:
            return sr.lstat(rel)
        except (FileNotFoundError, NotADirectoryError):
            return None

    return lstat


def _git_commit(source: str, checksum: str | None, tmpdir: str | None) -> str:
    """The commit an ``ADD <git URL>`` checks out: asked of the remote (``ls-remote``), or,
    for an abbreviated SHA, learnt by cloning. ``--checksum`` pins it: another commit fails."""
    git = parse_git_source(source)
    what = str(git)
    commit = resolve_commit(git, what=what)
    if commit is None:
        with (
            tempfile.TemporaryDirectory(prefix="kiln-add-key-", dir=tmpdir) as tmp,
            git_checkout(git, tmp, what=what) as checkout,
        ):
            commit = checkout.commit
    if checksum:
        want = checksum.lower().removeprefix("sha1:")
        if not (7 <= len(want) <= 64 and all(c in "0123456789abcdef" for c in want)):
            raise InvalidArgument(
                f"--checksum {checksum!r}: for a git source it is the commit's SHA (hex)"
            )
        if not commit.startswith(want):
            raise DigestMismatch(f"{git}: expected commit {checksum}, the ref is at {commit}")
    return commit


def _url_content_digest(url: str, tmpdir: str | None) -> str:
    """The digest of what ``url`` serves now: an ``ADD <url>`` step's cache key holds
    the content, not just the URL, so a rebuild after the remote file changed is a
    miss (BuildKit keys the same way). Without ``--checksum`` that costs a download per
    build; with it, the pinned digest is the key and nothing is fetched."""
    from kiln.util.download import download  # lazy: start-up cost, only ADD <url> needs it

    with tempfile.TemporaryDirectory(prefix="kiln-add-key-", dir=tmpdir) as tmp:
        return "sha256:" + download(url, os.path.join(tmp, "f"), what=f"ADD {url}").sha256


def _fetch_verified(url: str, checksum: str, tmp: str) -> str:
    import urllib.parse

    from kiln.util.download import download  # lazy: start-up cost, only ADD <url> needs it

    algo, _, want = checksum.partition(":")
    if algo != "sha256" or len(want) != 64:
        raise InvalidArgument(f"--checksum {checksum!r}: use sha256:<64 hex digits>")
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "download"
    fetched = download(url, os.path.join(tmp, name), what=f"ADD {url}")
    if fetched.sha256 != want:
        raise DigestMismatch(f"{redact(url)}: expected {checksum}, got sha256:{fetched.sha256}")
    # as every ADD <url> (and buildah, BuildKit): mode 0600, mtime from Last-Modified
    os.chmod(fetched.path, 0o600)
    if fetched.last_modified is not None:
        os.utime(fetched.path, (fetched.last_modified, fetched.last_modified))
    return name


@contextlib.contextmanager
def located(where: str, what: str) -> Iterator[None]:
    """Prefix kiln errors raised inside with the Dockerfile line (``Dockerfile:3: COPY: ...``)."""
    try:
        yield
    except ProcessFailed:
        raise
    except KilnError as exc:
        if str(exc).startswith(where):
            raise
        raise type(exc)(f"{where}: {what}: {exc}") from None
