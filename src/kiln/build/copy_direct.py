"""COPY/ADD written straight from the context into a layer blob (issue 15).

When nothing later in the build reads the files a COPY/ADD step makes (only plain COPYs
come after it in the stage, and no later stage builds on the stage or copies/mounts from
it: :func:`read_later`, decided from the plan alone), its layer need not exist as files
first. :func:`plan_direct` lists the layer's entries as the materialising path would find
them in the overlay upper directory after ``copy_into`` (same names, types, modes, owners,
mtimes, hard links; the same content digest for the history), reading the context's
metadata and the image's tree (a read-only view) only; ``archive.tar_writer.write_layer``
then reads each file once (tar -> diff id -> compression -> blob). The image records the
layer as a pull does one it has not unpacked: a later ``FROM``, ``kiln run`` or ``kiln
from`` unpacks it from its blob.

``COPY --from`` lists its layer the same way from the other stage's (or image's) tree,
mounted read-only for as long as the layer is being written, its entries keeping their
owners as the copier's ``keep_owner`` does.

A run of such steps writes each layer straight: a step plans against the image below the
run's first direct layer (mounted once for the run, none of the run's layers unpacked),
takes the directories those layers list from them, and falls back when it meets anything
else they hold (``kiln.build.copy_claims``); falling back unpacks them.

Directories WORKDIR and VOLUME want made before the step are planned first, as the
working container would make them. Anything unusual is left to the materialising path
(:func:`plan_direct` returns None):
heredocs, URLs, git, archives ADD would unpack, ``--parents``, a destination
reached through a symlink or onto anything the image has at the same path but a plain
directory, a directory with extended attributes on the way, devices, a target written
twice, a caller that is not root, the "copy" snapshot driver (its layers are two-tree
diffs, not overlay upper dirs). ``BuildOptions.direct_copy=False`` turns the direct path
off (the tests compare both paths' layers with it).

Entries the copy writes are exactly the copier's (``kiln.container.copier``): the source
tree walked with directory fds in the copier's order, for the content digest; existing
directories on the way as overlayfs copies them up (their own mode, owner and mtime; the
mtime of one the copy creates a name in is the time of the copy, as the kernel sets it);
directories the copy makes 0755 (the top one with its source's mtime).

Memory does not grow with the number of files: :func:`plan_direct` walks the sources in
the copier's order for the content digest (which the history needs before the layer is
written) and the checks, keeping only what the copy makes outside its directory sources'
trees; ``DirectLayer.entries`` walks those trees again, one directory at a time in layer
order, as the writer reads them, both walks through the one listing the copier uses
(``kiln.container.copier.list_source_dir``). The two walks' fingerprints (a sum of one
hash of what each saw per entry) must agree, and each file entry carries the (device,
inode, size, mtime, ctime) it was listed with, which the writer checks before and after
reading it: a context changed meanwhile fails the step as the copier's check does.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import posixpath
import stat
import time
from collections.abc import Container, Iterator, Sequence
from operator import itemgetter

from kiln.archive.changes import read_xattrs
from kiln.archive.entry import TarEntry
from kiln.archive.safe_root import SafeRoot
from kiln.build.copy_claims import Claims
from kiln.build.instructions import Add, Copy, Instruction, Run, Workdir
from kiln.build.stages import BuildPlan, Stage
from kiln.container.chmod import parse_chmod
from kiln.container.copier import ContentHash, CopyOptions, KnownDigest, list_source_dir
from kiln.container.copy_add import is_url
from kiln.container.git_source import is_git_source
from kiln.container.owner import resolve_chown
from kiln.container.paths import expand_source, is_dir_in, resolve_dest
from kiln.container.tar_detect import is_archive
from kiln.errors import InvalidArgument, KilnError
from kiln.runtime import resolve_user
from kiln.util.lazy_dataclass import dataclass

__all__ = ["DirectLayer", "direct_enabled", "plan_direct", "read_later"]

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FS_STEPS = (Run, Copy, Add, Workdir)  # WORKDIR makes its directory at the end of a stage


class _Fallback(Exception):
    """Something the direct path does not model: the materialising path copies instead."""


@dataclass
class DirectLayer:
    """A COPY/ADD's layer as the materialising path would write it, listed."""

    entries: Iterator[TarEntry]  # in canonical order, made as they are read
    digest: str  # the copy's content digest, as ``copy_into`` gives it
    claims: Claims  # what the layer holds (for the next direct step: see copy_claims)


def direct_enabled(asked: bool = True) -> bool:
    """The direct path may be taken: ``asked`` (``BuildOptions.direct_copy``) and root."""
    return asked and os.geteuid() == 0


def read_later(plan: BuildPlan, stage: Stage, instr: Instruction) -> bool:
    """Whether the files ``instr`` (one of ``stage``'s own instructions) leaves are read by
    a later step: a later RUN/ADD/WORKDIR of the stage, a later COPY that cannot write its
    layer straight (heredocs, ``--parents``), or another planned stage that builds on this
    one or copies or mounts from it. A later plain COPY does not read them: it plans below
    them (``kiln.build.copy_claims``), or, falling back, unpacks them. An instruction not
    in the stage's list (an ONBUILD trigger) counts as read."""
    at = next((i for i, x in enumerate(stage.instructions) if x is instr), None)
    if at is None:
        return True
    if any(isinstance(x, _FS_STEPS) and not _plans_below(x) for x in stage.instructions[at + 1 :]):
        return True
    return any(stage.index in plan.stages[i].stage_deps for i in plan.order if i != stage.index)


def _plans_below(instr: Instruction) -> bool:
    """A COPY that may write its layer straight on layers written so (see read_later)."""
    return isinstance(instr, Copy) and not instr.parents and not instr.contents


def plan_direct(
    view: str,
    context_dir: str,
    instr: Copy | Add,
    *,
    workdir: str,
    known_digest: KnownDigest | None,
    include: Container[str] | None,
    wanted_dirs: Sequence[tuple[str, str]] = (),
    keep_owner: bool = False,
    below: Claims | None = None,
) -> DirectLayer | None:
    """The layer ``instr`` (expanded, its sources in ``context_dir``: the context, or the
    tree ``--from`` names) adds to the image whose tree is ``view`` (mounted read-only),
    or None when the materialising path must copy (see the module docstring). Errors the
    copy would report are left to it too. ``wanted_dirs``: (path, user) of the directories
    WORKDIR and VOLUME want made before the step (``Builder.make_dirs``: 0755, owned by
    the user if the image knows them). ``keep_owner``: entries keep their source's owner
    (``COPY --from``). ``below``: what layers above ``view``, not unpacked, hold (the
    image is ``view`` with them): a step that meets any of it is left to the
    materialising path."""
    if isinstance(instr, Copy) and instr.parents:
        return None
    if instr.contents or not instr.sources:
        return None
    if any(is_url(s) or is_git_source(s) for s in instr.sources):
        return None
    if isinstance(instr, Add) and instr.checksum:
        return None
    try:
        with SafeRoot.opened(view) as dst, SafeRoot.opened(context_dir) as ctx:
            planner = _Planner(dst, ctx, context_dir, instr, known_digest, include,
                               keep_owner=keep_owner, below=below)  # fmt: skip
            for path, user in wanted_dirs:
                planner.make_wanted(view, path, user)
            planner.run(workdir)
            entries = planner.entries()
            return DirectLayer(entries, planner.content.digest(), planner.claims)
    except (_Fallback, KilnError, OSError):
        return None


class _Planner:
    """``copy_into`` and ``TreeCopier`` walked without writing: what they would make."""

    def __init__(
        self,
        dst: SafeRoot,
        ctx: SafeRoot,
        context_dir: str,
        instr: Copy | Add,
        known_digest: KnownDigest | None,
        include: Container[str] | None,
        *,
        keep_owner: bool = False,
        below: Claims | None = None,
    ) -> None:
        self.dst = dst
        self.below = below
        self.ctx = ctx
        self.context_dir = os.path.abspath(context_dir)
        self.instr = instr
        self.unpacks = isinstance(instr, Add) and instr.unpack is not False
        self.known_digest = known_digest
        self.include = include
        self.content = ContentHash()
        self.now = time.time_ns()
        if instr.chown:
            self._users_below()
        owner = resolve_chown(dst, instr.chown) if instr.chown else None
        mode = parse_chmod(instr.chmod) if instr.chmod else None
        self.opts = CopyOptions(owner=owner, chmod=mode, keep_owner=keep_owner)
        #: what the copy makes outside its directory sources' trees, by path ("a/b", no
        #: leading slash), and the directories whose mtime it has set (nothing may be
        #: created in them afterwards)
        self.planned: dict[str, TarEntry] = {}
        self.sealed: set[str] = set()
        #: the entries right below a directory source that merges into the image's
        #: directory (path -> is a directory), checked against what comes after them
        self.claimed: dict[str, bool] = {}
        #: the image's directories the copy creates names in (their mtime becomes now)
        self.touched: set[str] = set()
        #: source inode -> in-container path of its first copy (the copier's hard links),
        #: and the inodes of files with more than one name
        self.links: dict[tuple[int, int], str] = {}
        self.multi: set[tuple[int, int]] = set()
        #: the directory sources, walked again for the layer: (source, target path, label,
        #: host path, (dev, inode)); the fingerprints of what each pass saw below them
        self.walks: list[tuple[str, str, str, str, tuple[int, int]]] = []
        #: the directories whose whole trees the copy makes; what the layer holds
        self.trees: set[str] = set()
        self.claims = Claims()
        self.seen = 0
        self.walked = 0

    def make_wanted(self, view: str, path: str, user: str) -> None:
        """A directory WORKDIR or VOLUME wants, as ``Builder.make_dirs`` makes it: its
        missing components 0755, owned by ``user`` (root if unknown or not given)."""
        owner = (0, 0)
        if user:
            self._users_below()
            try:
                found = resolve_user(view, user)
            except InvalidArgument:
                pass
            else:
                owner = (found.uid, found.gid)
        self._ensure_dir(path, owner)

    # -- the copy_into flow ---------------------------------------------------------------

    def run(self, workdir: str) -> None:
        dest_path, dest_is_dir = resolve_dest(self.instr.dest, workdir)
        plan: list[tuple[str, str]] = []
        for src in self.instr.sources:
            plan += [(src, rel) for rel in expand_source(self.ctx, src)
                     if self.include is None or rel in self.include]  # fmt: skip
        if len(plan) > 1:
            dest_is_dir = True
        for _, rel in plan:
            self._copy_local(rel, dest_path, dest_is_dir)

    def _copy_local(self, rel: str, dest_path: str, dest_is_dir: bool) -> None:
        label = rel or "."
        if rel and not is_dir_in(self.ctx, rel):
            if self.unpacks and is_archive(self.ctx, rel):
                raise _Fallback("ADD unpacks an archive")
            if dest_is_dir or self._is_dir(dest_path):
                real = self._ensure_dir(dest_path)
                target = posixpath.join(real, posixpath.basename(rel))
            else:
                target = self._in_parent(dest_path)
            self._top(rel, target, label)
            return
        target = self._in_parent(dest_path)
        self._top(rel, target, label)

    def _in_parent(self, path: str) -> str:
        name = posixpath.basename(path)
        if not name:
            return "/"
        return posixpath.join(self._ensure_dir(posixpath.dirname(path)), name)

    # -- the image's tree (read-only view) and what the copy has planned ------------------

    def _users_below(self) -> None:
        """``/etc/passwd`` and ``/etc/group`` are read from the view: neither may be one a
        layer above it holds."""
        if self.below is None:
            return
        for name in ("etc/passwd", "etc/group"):
            try:
                real = self.dst.resolve(name)
            except OSError:
                raise _Fallback(f"{name} cannot be resolved in the image") from None
            if self.below.touches(name) or self.below.touches(real):
                raise _Fallback(f"{name} is in a layer not unpacked")

    def _below(self, rel: str) -> TarEntry | None:
        """The directory entry the layers above the view give ``rel``, if they list it;
        else ``rel`` is looked up in the view, and those layers must not hold it."""
        if self.below is None:
            return None
        known = self.below.dirs.get(rel)
        if known is None and self.below.touches(rel):
            raise _Fallback(f"{rel} is in a layer not unpacked")
        return known

    def _kind(self, path: str) -> str:
        """ "dir" (the image's directory or one planned), "planned" (something else the
        copy makes there), "absent"; anything else in the image: fall back."""
        rel = path.strip("/")
        if not rel:
            return "dir"
        entry = self.planned.get(rel)
        if entry is not None:
            return "dir" if entry.type == "dir" else "planned"
        claimed = self.claimed.get(rel)
        if claimed is not None:
            return "dir" if claimed else "planned"
        if self._below(rel) is not None:
            return "dir"
        try:
            st = self.dst.lstat(rel)
        except (FileNotFoundError, NotADirectoryError):
            return "absent"
        if stat.S_ISDIR(st.st_mode):
            return "dir"
        raise _Fallback(f"{path} is a symlink or file in the image")

    def _is_dir(self, path: str) -> bool:
        kind = self._kind(path)
        if kind == "planned":
            raise _Fallback(f"{path} is written twice")
        return kind == "dir"

    def _ensure_dir(self, path: str, owner: tuple[int, int] | None = None) -> str:
        """``ensure_dir``: the missing directories of ``path`` made (0755, owned as the copy
        or by ``owner``, mtime the copy's time); every existing one must be a plain
        directory."""
        uid, gid = owner if owner is not None else self.opts.uid_gid
        parts = [p for p in path.split("/") if p]
        for i in range(len(parts)):
            here = "/".join(parts[: i + 1])
            kind = self._kind(here)
            if kind == "planned":
                raise _Fallback(f"{here} is not a directory")
            if kind == "absent":
                self._created(here)
                self.planned[here] = TarEntry(path=here, type="dir", mode=0o755, uid=uid,
                                              gid=gid, mtime=self.now)  # fmt: skip
        return "/" + "/".join(parts)

    def _created(self, rel: str) -> None:
        """A new name ``rel`` is made in its parent directory."""
        parent = posixpath.dirname(rel)
        if parent in self.sealed:
            raise _Fallback(f"{parent} is written after its metadata was set")
        if parent and parent not in self.planned:
            self.touched.add(parent)
        if rel in self.planned or rel in self.claimed:
            raise _Fallback(f"{rel} is written twice")

    def _new(self, target: str) -> str:
        """The relative path of a new entry at ``target``: nothing may be there yet."""
        rel = target.strip("/")
        if self._kind(target) != "absent":
            raise _Fallback(f"{target} exists")
        self._created(rel)
        return rel

    # -- the source side, first pass: TreeCopier's walk, in its order ---------------------

    def _top(self, rel: str, target: str, label: str) -> None:
        pfd = self.ctx.open_path(rel, follow=True)
        try:
            st = os.fstat(pfd)
            host = os.path.join(self.context_dir, self.ctx.resolve(rel).lstrip("/"))
            if stat.S_ISDIR(st.st_mode):
                dfd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    self._top_dir(dfd, rel, st, target, label, host)
                finally:
                    os.close(dfd)
            elif stat.S_ISREG(st.st_mode):
                trel = self._new(target)
                self._file(st, target, label, host)
                entry = self._entry(trel, st, host, "")
                assert entry is not None  # a regular file
                self.planned[trel] = entry
            else:
                raise _Fallback("a special file as a copy source")
        finally:
            os.close(pfd)

    def _top_dir(
        self, dfd: int, src: str, st: os.stat_result, target: str, label: str, host: str
    ) -> None:
        """A directory source: its contents into ``target`` (made if missing). Only its
        own entry is planned here; what is below it is walked again, in layer order, when
        the layer is written (``_walk``): memory does not grow with the number of files."""
        existed = self._kind(target) == "dir"
        rel = target.strip("/")
        if not existed:
            rel = self._new(target)
            self.planned[rel] = TarEntry(path=rel, type="dir", mode=0o700)  # metadata below
            self.trees.add(rel)
        self.content.add(label, "dir", self._mode(st), "")
        self._children(dfd, target, label, host, fresh=not existed)
        if not existed:
            uid, gid = self.opts.uid_gid
            self.planned[rel] = TarEntry(path=rel, type="dir", mode=0o755, uid=uid, gid=gid,
                                         mtime=st.st_mtime_ns)  # fmt: skip
            self.sealed.add(rel)
        self.walks.append((src, rel, label, host, (st.st_dev, st.st_ino)))

    def _children(self, dfd: int, target: str, label: str, host: str, fresh: bool) -> None:
        """The entries below a directory source, in the copier's order, into the content
        digest. ``fresh``: ``target`` is a directory the copy makes, so nothing can be in
        the way below it; else (a top directory merging into the image's) each entry is
        checked against the image and what the copy made before."""
        for name, _ in list_source_dir(dfd, label, self.include):
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            ctarget = posixpath.join(target, name)
            clabel = posixpath.join(label, name)
            mode = st.st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode)
                    or stat.S_ISFIFO(mode)):  # fmt: skip
                if stat.S_ISSOCK(mode):
                    continue  # not copied, as the copier (and Docker) skip them
                raise _Fallback("a device in the context")
            if not fresh:
                if stat.S_ISDIR(mode) and self._kind(ctarget) == "dir":
                    raise _Fallback(f"{ctarget} merges into a directory of the image")
                crel = self._new(ctarget)
                self.claimed[crel] = stat.S_ISDIR(mode)
                if stat.S_ISDIR(mode):
                    self.trees.add(crel)
            link = os.readlink(name, dir_fd=dfd) if stat.S_ISLNK(mode) else ""
            self.seen += _fingerprint(ctarget, st, link)
            if stat.S_ISDIR(mode):
                xattrs = read_xattrs(os.path.join(host, name), overlay=True)
                self.content.add(clabel, "dir", self._mode(st), "", xattrs)
                cfd = os.open(name, _DIR, dir_fd=dfd)
                try:
                    now = os.fstat(cfd)
                    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                        raise _Fallback(f"{clabel} changed")
                    self._children(cfd, ctarget, clabel, os.path.join(host, name), fresh=True)
                finally:
                    os.close(cfd)
            elif stat.S_ISREG(mode):
                self._file(st, ctarget, clabel, os.path.join(host, name))
            elif link:
                self.content.add(clabel, "symlink", 0o777, link)
            else:
                self.content.add(clabel, "fifo", self._mode(st), "")

    def _file(self, st: os.stat_result, target: str, label: str, host: str) -> None:
        """A regular file into the content digest (a hard link to one copied before: a
        "link" line, as the copier's). Its entry is made a hard link to the first name of
        its inode in layer order when the layer is written."""
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1:
            self.multi.add(key)
            if key in self.links:
                self.content.add(label, "link", 0, self.links[key])
                return
            self.links[key] = target
        digest = self.known_digest(st, label) if self.known_digest is not None else None
        if digest is None:
            digest = _hash_file(host, st)
        self.content.add(label, "file", self._mode(st), digest, read_xattrs(host, overlay=True))

    def _entry(self, rel: str, st: os.stat_result, host: str, link: str) -> TarEntry | None:
        """The layer entry the copy makes at ``rel`` from source ``st`` (None: not copied)."""
        mode = st.st_mode
        uid, gid = self.opts.owner_of(st)
        if stat.S_ISREG(mode):
            return TarEntry(
                path=rel, type="file", source=host, mode=self._mode(st), uid=uid, gid=gid,
                size=st.st_size, mtime=st.st_mtime_ns,
                expect=(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns),
                xattrs=read_xattrs(host, overlay=True),
            )  # fmt: skip
        if stat.S_ISDIR(mode):
            kind = "dir"
        elif stat.S_ISLNK(mode):
            return TarEntry(path=rel, type="symlink", linkname=link, mode=0o777, uid=uid,
                            gid=gid, mtime=st.st_mtime_ns)  # fmt: skip
        elif stat.S_ISFIFO(mode):
            kind = "fifo"
        else:
            return None
        xattrs = read_xattrs(host, overlay=True) if kind == "dir" else {}
        return TarEntry(path=rel, type=kind, mode=self._mode(st), uid=uid, gid=gid,
                        mtime=st.st_mtime_ns, xattrs=xattrs)  # fmt: skip

    def _mode(self, st: os.stat_result) -> int:
        return self.opts.mode_for(st.st_mode, stat.S_ISDIR(st.st_mode))

    # -- the layer: the second pass, in layer order ----------------------------------------

    def entries(self) -> Iterator[TarEntry]:
        """Every entry the upper directory would hold, in canonical order, made as the
        writer asks for them: the planned ones and the image's directories on the way (as
        overlayfs copies them up), merged with the directory sources walked again in that
        order, one directory at a time; hard links point to the first name in that order.
        A source that is not what the first pass saw (its fingerprint differs) fails the
        step as the copier fails a source that changes while it copies."""
        out = dict(self.planned)
        for rel in [*out, *self.claimed, *(w[1] for w in self.walks)]:
            parent = rel if rel not in out and rel not in self.claimed else posixpath.dirname(rel)
            while parent and parent not in out:
                out[parent] = self._image_dir(parent)
                parent = posixpath.dirname(parent)
        fixed = [(e.path.encode("utf-8", "surrogateescape"), e) for e in out.values()]
        fixed.sort(key=itemgetter(0))
        dirs = {rel: e for rel, e in out.items() if e.type == "dir" and not e.xattrs}
        self.claims = Claims(frozenset(out) | frozenset(self.claimed), frozenset(self.trees),
                             dirs)  # fmt: skip
        walks, self.walks = self.walks, []
        return self._merged(fixed, walks)

    def _merged(
        self, fixed: list[tuple[bytes, TarEntry]], walks: list[tuple]
    ) -> Iterator[TarEntry]:
        firsts: dict[tuple[int, int], TarEntry] = {}
        with SafeRoot.opened(self.context_dir) as ctx:
            streams = [self._walk(ctx, *w) for w in walks]
            for _, entry in heapq.merge(fixed, *streams, key=itemgetter(0)):
                if entry.type == "file" and entry.expect is not None:
                    key = (entry.expect[0], entry.expect[1])
                    if key in self.multi:
                        first = firsts.setdefault(key, entry)
                        if first is not entry:
                            entry = TarEntry(path=entry.path, type="hardlink",
                                             linkname=first.path, mode=first.mode,
                                             uid=first.uid, gid=first.gid,
                                             mtime=first.mtime)  # fmt: skip
                yield entry
        if self.walked != self.seen:
            raise _changed(walks[0][2] if walks else ".")

    def _walk(
        self, ctx: SafeRoot, src: str, rel: str, label: str, host: str, ident: tuple[int, int]
    ) -> Iterator[tuple[bytes, TarEntry]]:
        """A directory source's entries below ``rel``, walked again in layer order."""
        try:
            pfd = ctx.open_path(src, follow=True)
        except OSError:
            raise _changed(label) from None
        try:
            st = os.fstat(pfd)
            if (st.st_dev, st.st_ino) != ident or not stat.S_ISDIR(st.st_mode):
                raise _changed(label)
            dfd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            os.close(pfd)
        try:
            yield from self._walk_dir(dfd, rel, "/" + rel, label, host)
        finally:
            os.close(dfd)

    def _walk_dir(
        self, dfd: int, rel: str, target: str, label: str, host: str
    ) -> Iterator[tuple[bytes, TarEntry]]:
        order = []
        for name, _ in list_source_dir(dfd, label, self.include):
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                raise _changed(posixpath.join(label, name)) from None
            key = name.encode("utf-8", "surrogateescape")
            order.append((key, name, st, False))
            if stat.S_ISDIR(st.st_mode):  # what is below it sorts after "name/"
                order.append((key + b"/", name, st, True))
        order.sort(key=itemgetter(0))
        prefix = rel + "/" if rel else ""
        for _, name, st, below in order:
            crel = prefix + name
            clabel = posixpath.join(label, name)
            chost = os.path.join(host, name)
            if below:
                try:
                    cfd = os.open(name, _DIR, dir_fd=dfd)
                except OSError:
                    raise _changed(clabel) from None
                try:
                    now = os.fstat(cfd)
                    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                        raise _changed(clabel)
                    yield from self._walk_dir(cfd, crel, posixpath.join(target, name), clabel,
                                              chost)  # fmt: skip
                finally:
                    os.close(cfd)
                continue
            link = ""
            if stat.S_ISLNK(st.st_mode):
                try:
                    link = os.readlink(name, dir_fd=dfd)
                except OSError:
                    raise _changed(clabel) from None
            entry = self._entry(crel, st, chost, link)
            if entry is None:
                if not stat.S_ISSOCK(st.st_mode):
                    raise _changed(clabel)  # a device: the first pass saw none
                continue
            self.walked += _fingerprint(posixpath.join(target, name), st, link)
            yield crel.encode("utf-8", "surrogateescape"), entry

    def _image_dir(self, rel: str) -> TarEntry:
        """A directory of the image on the way to what the copy writes, copied up."""
        known = self._below(rel)
        if known is not None:  # as a layer not unpacked left it
            mtime = self.now if rel in self.touched else known.mtime
            return TarEntry(path=rel, type="dir", mode=known.mode, uid=known.uid,
                            gid=known.gid, mtime=mtime)  # fmt: skip
        st = self.dst.lstat(rel)
        if not stat.S_ISDIR(st.st_mode):
            raise _Fallback(f"{rel} is not a directory in the image")
        # every directory on the way was found a directory (lstat): no link is followed
        if read_xattrs(os.path.join(self.dst.path, rel), overlay=True):
            raise _Fallback(f"{rel} has extended attributes")
        mtime = self.now if rel in self.touched else st.st_mtime_ns
        return TarEntry(path=rel, type="dir", mode=stat.S_IMODE(st.st_mode), uid=st.st_uid,
                        gid=st.st_gid, mtime=mtime)  # fmt: skip


def _fingerprint(target: str, st: os.stat_result, link: str) -> int:
    """What a pass saw of one entry, as a number: the sum over a walk is compared between
    the passes (in different orders), so nothing per entry is kept between them."""
    return hash((target, st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns,
                 st.st_ctime_ns, st.st_uid, st.st_gid, st.st_nlink, link))  # fmt: skip


def _changed(label: str) -> InvalidArgument:
    return InvalidArgument(
        f"copy source {label} changed while it was being copied: try again once it is stable"
    )


def _hash_file(host: str, st: os.stat_result) -> str:
    """The sha256 of a file the build has no digest of (changed less than 2 s before the
    context was hashed): read here, and checked unchanged when the layer reads it."""
    fd = os.open(host, _READ)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise _Fallback(f"{host} changed")
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)
