"""COPY/ADD written straight from the context into a layer blob (issue 15).

When nothing later in the build reads the files a COPY/ADD step makes (the stage's last
filesystem step, and no later stage builds on the stage or copies/mounts from it:
:func:`read_later`, decided from the plan alone), its layer need not exist as files
first. :func:`plan_direct` lists the layer's entries as the materialising path would find
them in the overlay upper directory after ``copy_into`` (same names, types, modes, owners,
mtimes, hard links; the same content digest for the history), reading the context's
metadata and the image's tree (a read-only view) only; ``archive.tar_writer.write_layer``
then reads each file once (tar -> diff id -> compression -> blob). The image records the
layer as a pull does one it has not unpacked: a later ``FROM``, ``kiln run`` or ``kiln
from`` unpacks it from its blob.

Directories WORKDIR and VOLUME want made before the step are planned first, as the
working container would make them. Anything unusual is left to the materialising path
(:func:`plan_direct` returns None):
heredocs, URLs, git, archives ADD would unpack, ``--parents``, ``--from``, a destination
reached through a symlink or onto anything the image has at the same path but a plain
directory, a directory with extended attributes on the way, devices, a target written
twice, a caller that is not root, the "copy" snapshot driver (its layers are two-tree
diffs, not overlay upper dirs). ``BuildOptions.direct_copy=False`` turns the direct path
off (the tests compare both paths' layers with it).

Entries the copy writes are exactly the copier's (``kiln.container.copier``): the source
tree walked with directory fds in the copier's order, for the content digest; existing
directories on the way as overlayfs copies them up (their own mode, owner and mtime; the
mtime of one the copy creates a name in is the time of the copy, as the kernel sets it);
directories the copy makes 0755 (the top one with its source's mtime). Each file entry
carries the (device, inode, size, mtime, ctime) it was planned with; the writer refuses a
file that no longer matches, so a context changed meanwhile fails the step as the copier's
check does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
import stat
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

from kiln.archive.changes import read_xattrs
from kiln.archive.entry import TarEntry, sort_key
from kiln.archive.safe_root import SafeRoot
from kiln.build.instructions import Add, Copy, Instruction, Run, Workdir
from kiln.build.stages import BuildPlan, Stage
from kiln.container.chmod import parse_chmod
from kiln.container.copier import ContentHash, CopyOptions
from kiln.container.copy_add import is_url
from kiln.container.git_source import is_git_source
from kiln.container.owner import resolve_chown
from kiln.container.paths import expand_source, is_dir_in, resolve_dest
from kiln.container.tar_detect import is_archive
from kiln.errors import InvalidArgument, KilnError
from kiln.runtime import resolve_user

__all__ = ["DirectLayer", "direct_enabled", "plan_direct", "read_later"]

#: (stat of a context file) -> its sha256 hex digest, if the build hashed it under that stat
KnownDigest = Callable[[os.stat_result], "str | None"]
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FS_STEPS = (Run, Copy, Add, Workdir)  # WORKDIR makes its directory at the end of a stage


class _Fallback(Exception):
    """Something the direct path does not model: the materialising path copies instead."""


@dataclass
class DirectLayer:
    """A COPY/ADD's layer as the materialising path would write it, listed."""

    entries: list[TarEntry]  # in canonical order
    digest: str  # the copy's content digest, as ``copy_into`` gives it


def direct_enabled(asked: bool = True) -> bool:
    """The direct path may be taken: ``asked`` (``BuildOptions.direct_copy``) and root."""
    return asked and os.geteuid() == 0


def read_later(plan: BuildPlan, stage: Stage, instr: Instruction) -> bool:
    """Whether the files ``instr`` (one of ``stage``'s own instructions) leaves are read by
    a later step: a later RUN/COPY/ADD/WORKDIR of the stage, or another planned stage that
    builds on this one or copies or mounts from it. An instruction not in the stage's list
    (an ONBUILD trigger) counts as read."""
    at = next((i for i, x in enumerate(stage.instructions) if x is instr), None)
    if at is None:
        return True
    if any(isinstance(x, _FS_STEPS) for x in stage.instructions[at + 1 :]):
        return True
    return any(stage.index in plan.stages[i].stage_deps for i in plan.order if i != stage.index)


def plan_direct(
    view: str,
    context_dir: str,
    instr: Copy | Add,
    *,
    workdir: str,
    known_digest: KnownDigest | None,
    include: Container[str] | None,
    wanted_dirs: Sequence[tuple[str, str]] = (),
) -> DirectLayer | None:
    """The layer ``instr`` (expanded, from the context in ``context_dir``) adds to the image
    whose tree is ``view`` (mounted read-only), or None when the materialising path must
    copy (see the module docstring). Errors the copy would report are left to it too.
    ``wanted_dirs``: (path, user) of the directories WORKDIR and VOLUME want made before
    the step (``Builder.make_dirs``: 0755, owned by the user if the image knows them)."""
    if isinstance(instr, Copy) and (instr.from_ or instr.parents):
        return None
    if instr.contents or not instr.sources:
        return None
    if any(is_url(s) or is_git_source(s) for s in instr.sources):
        return None
    if isinstance(instr, Add) and instr.checksum:
        return None
    try:
        with SafeRoot(view) as dst, SafeRoot(context_dir) as ctx:
            planner = _Planner(dst, ctx, context_dir, instr, known_digest, include)
            for path, user in wanted_dirs:
                planner.make_wanted(view, path, user)
            planner.run(workdir)
            return DirectLayer(planner.entries(), planner.content.digest())
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
    ) -> None:
        self.dst = dst
        self.ctx = ctx
        self.context_dir = os.path.abspath(context_dir)
        self.instr = instr
        self.unpacks = isinstance(instr, Add) and instr.unpack is not False
        self.known_digest = known_digest
        self.include = include
        self.content = ContentHash()
        self.now = time.time_ns()
        owner = resolve_chown(dst, instr.chown) if instr.chown else None
        mode = parse_chmod(instr.chmod) if instr.chmod else None
        self.opts = CopyOptions(owner=owner, chmod=mode)
        #: what the copy makes, by path ("a/b", no leading slash), and the directories whose
        #: mtime it has set (nothing may be created in them afterwards)
        self.planned: dict[str, TarEntry] = {}
        self.sealed: set[str] = set()
        #: the image's directories the copy creates names in (their mtime becomes now)
        self.touched: set[str] = set()
        #: source inode -> in-container path of its first copy (the copier's hard links)
        self.links: dict[tuple[int, int], str] = {}
        self.link_paths: dict[tuple[int, int], list[str]] = {}

    def make_wanted(self, view: str, path: str, user: str) -> None:
        """A directory WORKDIR or VOLUME wants, as ``Builder.make_dirs`` makes it: its
        missing components 0755, owned by ``user`` (root if unknown or not given)."""
        owner = (0, 0)
        if user:
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

    def _kind(self, path: str) -> str:
        """ "dir" (the image's directory or one planned), "planned" (something else the
        copy makes there), "absent"; anything else in the image: fall back."""
        rel = path.strip("/")
        if not rel:
            return "dir"
        entry = self.planned.get(rel)
        if entry is not None:
            return "dir" if entry.type == "dir" else "planned"
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
        if rel in self.planned:
            raise _Fallback(f"{rel} is written twice")

    def _new(self, target: str) -> str:
        """The relative path of a new entry at ``target``: nothing may be there yet."""
        rel = target.strip("/")
        if self._kind(target) != "absent":
            raise _Fallback(f"{target} exists")
        self._created(rel)
        return rel

    # -- the source side: TreeCopier's walk ------------------------------------------------

    def _top(self, rel: str, target: str, label: str) -> None:
        pfd = self.ctx.open_path(rel, follow=True)
        try:
            st = os.fstat(pfd)
            host = os.path.join(self.context_dir, self.ctx.resolve(rel).lstrip("/"))
            if stat.S_ISDIR(st.st_mode):
                dfd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    self._dir(dfd, st, target, label, host, top=True)
                finally:
                    os.close(dfd)
            elif stat.S_ISREG(st.st_mode):
                self._file(st, target, label, host)
            else:
                raise _Fallback("a special file as a copy source")
        finally:
            os.close(pfd)

    def _dir(
        self, dfd: int, st: os.stat_result, target: str, label: str, host: str, top: bool
    ) -> None:
        existed = self._kind(target) == "dir"
        rel = target.strip("/")
        if existed and not top:
            raise _Fallback(f"{target} merges into a directory of the image")
        if not existed:
            rel = self._new(target)
            self.planned[rel] = TarEntry(path=rel, type="dir", mode=0o700)  # metadata below
        self.content.add(label, "dir", self._mode(st), "")
        with os.scandir(dfd) as it:
            names = sorted((e.name, e.is_file(follow_symlinks=False)) for e in it)
        if self.include is not None:
            base = "" if label == "." else label.removeprefix("./")
            prefix = base + "/" if base else ""
            names = [n for n in names if prefix + n[0] in self.include]
        for name, _ in names:
            self._child(dfd, name, posixpath.join(target, name), posixpath.join(label, name),
                        os.path.join(host, name))  # fmt: skip
        if not top:
            self._set_dir(rel, st, self._mode(st), self.opts.owner_of(st))
        elif not existed:
            self._set_dir(rel, st, 0o755, self.opts.uid_gid)

    def _set_dir(self, rel: str, st: os.stat_result, mode: int, owner: tuple[int, int]) -> None:
        uid, gid = owner
        self.planned[rel] = TarEntry(path=rel, type="dir", mode=mode, uid=uid, gid=gid,
                                     mtime=st.st_mtime_ns)  # fmt: skip
        self.sealed.add(rel)

    def _child(self, dfd: int, name: str, target: str, label: str, host: str) -> None:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            cfd = os.open(name, _DIR, dir_fd=dfd)
            try:
                now = os.fstat(cfd)
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                    raise _Fallback(f"{label} changed")
                self._dir(cfd, st, target, label, host, top=False)
            finally:
                os.close(cfd)
        elif stat.S_ISREG(st.st_mode):
            self._file(st, target, label, host)
        elif stat.S_ISLNK(st.st_mode):
            link_target = os.readlink(name, dir_fd=dfd)
            rel = self._new(target)
            uid, gid = self.opts.owner_of(st)
            self.content.add(label, "symlink", 0o777, link_target)
            self.planned[rel] = TarEntry(path=rel, type="symlink", linkname=link_target,
                                         mode=0o777, uid=uid, gid=gid,
                                         mtime=st.st_mtime_ns)  # fmt: skip
        elif stat.S_ISFIFO(st.st_mode):
            rel = self._new(target)
            uid, gid = self.opts.owner_of(st)
            self.content.add(label, "fifo", self._mode(st), "")
            self.planned[rel] = TarEntry(path=rel, type="fifo", mode=self._mode(st), uid=uid,
                                         gid=gid, mtime=st.st_mtime_ns)  # fmt: skip
        elif stat.S_ISSOCK(st.st_mode):
            return  # not copied, as the copier (and Docker) skip them
        else:
            raise _Fallback("a device in the context")

    def _file(self, st: os.stat_result, target: str, label: str, host: str) -> None:
        key = (st.st_dev, st.st_ino)
        rel = self._new(target)
        if st.st_nlink > 1 and key in self.links:
            self.content.add(label, "link", 0, self.links[key])
            self.link_paths[key].append(rel)
            self.planned[rel] = TarEntry(path=rel, type="hardlink")  # filled in entries()
            return
        digest = self.known_digest(st) if self.known_digest is not None else None
        if digest is None:
            digest = _hash_file(host, st)
        uid, gid = self.opts.owner_of(st)
        mode = self._mode(st)
        self.content.add(label, "file", mode, digest)
        self.planned[rel] = TarEntry(
            path=rel, type="file", source=host, mode=mode, uid=uid, gid=gid, size=st.st_size,
            mtime=st.st_mtime_ns,
            expect=(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns),
        )  # fmt: skip
        if st.st_nlink > 1:
            self.links[key] = target
            self.link_paths[key] = [rel]

    def _mode(self, st: os.stat_result) -> int:
        return self.opts.mode_for(st.st_mode, stat.S_ISDIR(st.st_mode))

    # -- the layer -------------------------------------------------------------------------

    def entries(self) -> list[TarEntry]:
        """Every entry the upper directory would hold, in canonical order: the planned
        ones, hard links to the first name in that order, and the image's directories on
        the way (as overlayfs copies them up)."""
        out = self.planned  # completed in place: the listing is not needed twice
        for paths in self.link_paths.values():
            if len(paths) < 2:
                continue
            ordered = sorted(paths, key=lambda p: p.encode("utf-8", "surrogateescape"))
            first = out[paths[0]]
            for i, path in enumerate(ordered):
                if i == 0:
                    out[path] = dataclasses.replace(first, path=path)
                else:
                    out[path] = TarEntry(path=path, type="hardlink", linkname=ordered[0],
                                         mode=first.mode, uid=first.uid, gid=first.gid,
                                         mtime=first.mtime)  # fmt: skip
        for rel in list(out):
            parent = posixpath.dirname(rel)
            while parent and parent not in out:
                out[parent] = self._image_dir(parent)
                parent = posixpath.dirname(parent)
        return sorted(out.values(), key=sort_key)

    def _image_dir(self, rel: str) -> TarEntry:
        """A directory of the image on the way to what the copy writes, copied up."""
        st = self.dst.lstat(rel)
        if not stat.S_ISDIR(st.st_mode):
            raise _Fallback(f"{rel} is not a directory in the image")
        # every directory on the way was found a directory (lstat): no link is followed
        if read_xattrs(os.path.join(self.dst.path, rel), overlay=True):
            raise _Fallback(f"{rel} has extended attributes")
        mtime = self.now if rel in self.touched else st.st_mtime_ns
        return TarEntry(path=rel, type="dir", mode=stat.S_IMODE(st.st_mode), uid=st.st_uid,
                        gid=st.st_gid, mtime=mtime)  # fmt: skip


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
