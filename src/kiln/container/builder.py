"""``Builder``: one working container — a writable overlay snapshot over an image's layers plus
the image config being edited — persisted in the store. See the package docstring for the API.

The Builder alone changes its state: callers go through its methods (``set_config``,
``set_pending_history``, ``set_history_defaults``, ``commit``, ``commit_step``,
``adopt_image``) and edit its config through ``config``'s methods; ``commit.py`` writes
images from what ``Builder.commit`` hands it and never sees the Builder.

Imported where used (marked ``start-up:``), not at the top: ``kiln.image`` (its compression
modules cost ~0.15 s) with ``.commit``, which needs it, and ``kiln.snapshot`` (~0.03 s):
``kiln containers``, ``kiln inspect`` and ``kiln rm`` load this module but never unpack or
commit an image.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kiln.archive.changes import Change, changes_from_overlay_upper, diff_trees
from kiln.archive.compression import Compression
from kiln.archive.safe_root import SafeRoot
from kiln.archive.streams import CountedWrites
from kiln.errors import InvalidArgument, NotFound
from kiln.oci import History, ImageConfig, Reference
from kiln.oci.reference import is_short_name
from kiln.runtime import resolve_user
from kiln.store import ContainerRecord, ImageRecord, Store
from kiln.util.choices import ImageFormat, PullPolicy
from kiln.util.held_signals import finish_held, signals_held
from kiln.util.timefmt import rfc3339

from .config_edit import ConfigEditor
from .naming import check_name
from .records import Puller, find_record, insert_record, resolve_base, scratch_config
from .run import Stubs, check_run_flags, run_in, run_options
from .state import AddedContent, ContainerState

if TYPE_CHECKING:
    from .copy_add import CopyOutcome

SCRATCH = "scratch"


def _backends(ctx_or_store: Any, snapshots: Any) -> tuple[Store, Any]:
    store = getattr(ctx_or_store, "store", ctx_or_store)
    if snapshots is None:
        snapshots = getattr(ctx_or_store, "snapshots", None)
    if snapshots is None:
        # start-up: kiln.snapshot costs ~0.03 s (see the module docstring)
        from kiln.snapshot import Snapshotter

        snapshots = Snapshotter(os.path.join(store.root, "snapshots"))
    return store, snapshots


class Builder:
    """A working container. Create with ``from_image`` or ``load``; see ``kiln.container``."""

    def __init__(
        self,
        store: Store,
        snapshots: Any,
        record: ContainerRecord,
        state: ContainerState,
        *,
        volatile_mounts: bool = False,
    ):
        self.store = store
        self.snapshots = snapshots
        self.record = record
        self.state = state
        self.config = ConfigEditor(state.config, state.annotations)
        #: mount the rootfs for a run/copy ``volatile`` (a build's container: thrown away,
        #: or committed by ``commit_step``, which records what it adopts as not yet durable);
        #: not persisted in the state, so `kiln from`/`kiln run` working containers keep
        #: synced mounts; its snapshots are made ``volatile`` (dropped after another boot)
        self.volatile_mounts = volatile_mounts
        #: the image of ``state.image_id`` in memory (``kiln.image.StoreImage``), when this
        #: process has it open: a build's next step commits on it without reading it back
        self.image: Any = None

    # -- creation and lookup --------------------------------------------------------------

    @classmethod
    def from_image(
        cls,
        ctx_or_store: Any,
        image: str | None,
        *,
        name: str | None = None,
        pull_policy: str = "missing",
        puller: Puller | None = None,
        snapshots: Any = None,
        image_format: str = "oci",
        owner: str = "",
        run: Any = None,
        volatile_mounts: bool = False,
        platform: Any = None,
        volumes: Sequence[str] = (),
        owned: Callable[[Builder], object] | None = None,
    ) -> Builder:
        """A new working container over ``image`` (None or ``"scratch"`` for an empty rootfs).
        ``owner``: the process (``kiln.util.process_owner``) a build's container dies with.
        ``run``: the ``RunSettings`` its ``run`` uses by default (``kiln from``'s flags);
        ``volumes``: the ``--volume`` specs bound in each of its runs (``kiln from -v``).
        ``volatile_mounts``: a build's container, thrown away or committed by
        ``commit_step`` (see ``mounted``), on snapshots that do not outlive this boot.
        ``platform`` (a ``Platform``): the image's for it, pulled if the local one is of
        another; scratch's config names it (None: the host's). ``owned``: called with the
        container before it is returned, where a Ctrl-C still removes it: a caller that
        removes its containers when it stops takes it there, with no moment it has none."""
        store, snaps = _backends(ctx_or_store, snapshots)
        pull_policy = PullPolicy.parse(pull_policy)
        if name is not None:
            check_name(name)
        image_format = ImageFormat.parse(image_format)
        check_run_flags(run, volumes)  # before anything is pulled or made
        if image in (None, "", SCRATCH):
            base, config, top, img = None, scratch_config(platform), None, None
            image_name = SCRATCH
        else:
            assert image is not None
            base = resolve_base(store, image, pull_policy, puller, platform)
            image_name = _found_name(image, base)
            # start-up: kiln.image costs ~0.15 s (see the module docstring)
            from kiln.image import open_store_image, unpack_image

            img = open_store_image(store, base.id)
            top = unpack_image(store, snaps, img)
            config = img.config.evolve()
        cid = os.urandom(32).hex()
        key = cls.snapshot_key_prefix(cid)
        # the snapshot, the row and the handing over made inside the ``try``: a Ctrl-C just
        # after ``prepare`` or the row's insert returned must remove them too (removing one
        # not made is a NotFound, suppressed); the row first, so what a second Ctrl-C leaves
        # is a snapshot nothing names, which the next sweep removes
        try:
            snaps.prepare(key, top, volatile=volatile_mounts)
            state = ContainerState(
                image_id=base.id if base else None,
                image_name=image_name,
                config=config,
                snapshot_key=key,
                parent_chain_id=top,
                format=image_format,
                owner=owner,
                run=run.to_json() if run is not None else {},
                volumes=list(volumes),
            )
            record = insert_record(store, cid, name, image_name, base, state)
            builder = cls(store, snaps, record, state, volatile_mounts=volatile_mounts)
            builder.image = img if base else None
            if owned is not None:
                owned(builder)
        except BaseException:
            finish_held(lambda: _undo_creation(store, snaps, cid, key))
            raise
        return builder

    @classmethod
    def load(cls, ctx_or_store: Any, name_or_id: str, *, snapshots: Any = None) -> Builder:
        """The container named ``name_or_id`` (name, ID, unique ID prefix or its mount path)."""
        store, snaps = _backends(ctx_or_store, snapshots)
        record = find_record(store, name_or_id)
        state = ContainerState.from_json(record.state, f"container {record.name!r}")
        return cls(store, snaps, record, state)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def image_config(self) -> ImageConfig:
        return self.config.image

    def set_config(self, editor: ConfigEditor) -> None:
        """Go on with a copy of ``editor``'s config and annotations (a build stage's, whose
        later edits reach the container only through the next ``set_config``)."""
        self.config = editor.copy()

    def save(self) -> None:
        """Persist the state (config edits included) atomically in the store."""
        self.state.config = self.config.image
        self.state.annotations = dict(self.config.annotations)
        self.record = replace(
            self.record, state=self.state.to_json(), snapshot_key=self.state.snapshot_key
        )
        self.store.put_container(self.record)

    def rename(self, new_name: str) -> None:
        """Take ``new_name`` (checked as a new container's; held by another: AlreadyExists),
        as buildah rename does; the same name again is refused as there."""
        check_name(new_name)
        if new_name == self.name:
            raise InvalidArgument(f"{new_name} is already this container's name")
        self.record = replace(self.record, name=new_name)
        self.store.put_container(self.record)

    # -- the filesystem -------------------------------------------------------------------

    @property
    def mount_target(self) -> str:
        """Where the rootfs is mounted: the snapshotter's mount point of the snapshot."""
        return self.snapshots.mount_point(self.state.snapshot_key)

    def is_mounted(self) -> bool:
        if not self.state.mount_point:
            return False
        try:
            return _is_mountpoint(self.mount_target)
        except NotFound:
            return False

    def mount(self) -> str:
        """Mount the rootfs and keep it mounted (``kiln mount``); returns the merged path.
        Mounted and recorded, or neither: a Ctrl-C before the record is saved unmounts."""
        target = self.mount_target
        if self.is_mounted():
            return target
        # start-up: kiln.snapshot costs ~0.03 s (see the module docstring)
        from kiln.snapshot.mount import mount

        was = self.state.mount_point
        done: list[bool] = []  # the mount made: set with it, a Ctrl-C held until then
        try:
            with signals_held():
                mount(self._mount_spec(), target)
                done.append(True)
            self.state.mount_point = target
            self.save()
        except BaseException:
            finish_held(lambda: self._undo_mount(done, was))
            raise
        return target

    def _undo_mount(self, done: list[bool], was: str | None) -> None:
        """What ``mount`` did before it failed, undone: its mount, its record."""
        # start-up: kiln.snapshot costs ~0.03 s (see the module docstring)
        from kiln.snapshot.mount import unmount

        if done:
            unmount(self.mount_target)
            done.clear()  # run again by ``finish_held``: unmount once
        if self.state.mount_point != was:
            self.state.mount_point = was
            with contextlib.suppress(Exception):  # the save that failed: nothing recorded
                self.save()

    def unmount(self) -> None:
        """Undo ``mount`` (no-op when not mounted). Once the rootfs is unmounted, its
        record goes too, even when a Ctrl-C lands between."""
        # start-up: kiln.snapshot costs ~0.03 s (see the module docstring)
        from kiln.snapshot.mount import unmount

        try:
            if _is_mountpoint(self.mount_target):
                unmount(self.mount_target)
        finally:
            finish_held(self._forget_unmounted)

    def _forget_unmounted(self) -> None:
        """The record of a mount that is no longer there goes."""
        if self.state.mount_point is not None and not _is_mountpoint(self.mount_target):
            self.state.mount_point = None
            self.save()

    def _mount_spec(
        self, volatile: bool = False, stubs: Stubs | None = None, held: Any = None
    ) -> Any:
        """How to mount the rootfs; a stub layer under it is held on ``held`` (an ExitStack
        that outlasts the mount: a sweep removes only a stub nobody holds)."""
        spec = self.snapshots.mounts(self.state.snapshot_key)
        if volatile:
            spec = spec.as_volatile()
        held_stub = getattr(self.snapshots, "held_stub", None)
        if stubs is not None and held_stub is not None and spec.type == "overlay":
            spec = spec.with_bottom(held.enter_context(held_stub(*stubs)))
        return spec

    @contextlib.contextmanager
    def mounted(self, stubs: Stubs | None = None) -> Iterator[str]:
        """The merged rootfs path, mounted for the duration unless ``kiln mount`` holds it.

        With ``volatile_mounts`` the overlay is mounted ``volatile``: its unmount does not
        sync the whole file system the upper lives on (everyone's dirty data, ~0.01-0.3 s);
        ``commit_step`` adopts the upper as a layer recorded as not yet durable (its blob
        re-derives it after a power loss). ``stubs`` (directories, files): empty ones the
        rootfs shows where no layer has them, from a layer under the image's (a RUN's
        mountpoints), never written to the upper directory."""
        if self.is_mounted() or _is_mountpoint(self.mount_target):
            yield self.mount_target
            return
        # start-up: kiln.snapshot costs ~0.03 s (see the module docstring)
        from kiln.snapshot.mount import mount

        with contextlib.ExitStack() as held:
            spec = self._mount_spec(self.volatile_mounts, stubs, held)
            # the unmount is on the stack before the mount: a Ctrl-C just after the mount
            # returned unmounts too (``mount`` itself leaves nothing mounted when it raises);
            # it runs to its end with the signals held, a Ctrl-C raised after
            done: list[bool] = []
            held.callback(finish_held, lambda: self._unmount_after(spec, done))
            mount(spec, self.mount_target)
            done.append(True)
            yield self.mount_target

    def _unmount_after(self, spec: Any, done: list[bool]) -> None:
        """The end of ``mounted``: unmount, then a fresh work dir (or the volatile marker
        gone) for the next mount; nothing when the mount was never made (``done`` empty and
        nothing mounted)."""
        # start-up: kiln.snapshot costs ~0.03 s (see the module docstring)
        from kiln.snapshot.mount import forget_volatile, unmount

        if not done and not _is_mountpoint(self.mount_target):
            return
        unmount(self.mount_target)
        if not _recycled_work(self.snapshots, self.state.snapshot_key, spec):
            forget_volatile(spec)

    def upper_dir(self) -> str:
        return self.snapshots.upper_dir(self.state.snapshot_key)

    def is_copy_snapshot(self) -> bool:
        """Whether the snapshot is a full copy (no overlayfs): its "upper" is the whole tree."""
        return self.snapshots.mounts(self.state.snapshot_key).type == "bind"

    @contextlib.contextmanager
    def base_view(self) -> Iterator[str]:
        """The image's own tree (without the container's changes), mounted read-only."""
        # start-up: kiln.snapshot costs ~0.03 s (see the module docstring)
        from kiln.snapshot.mount import mounted

        if self.state.parent_chain_id is None:
            with tempfile.TemporaryDirectory(prefix="kiln-empty-") as empty:
                yield empty
            return
        key = f"kiln-view-{self.id}-{os.urandom(4).hex()}"
        try:  # the view made inside: a Ctrl-C just after ``view`` returned removes it too
            spec = self.snapshots.view(key, self.state.parent_chain_id)
            with mounted(spec) as path:
                yield path
        finally:
            finish_held(lambda: self.snapshots.discard(key))

    def lower_dirs(self) -> list[str]:
        if self.state.parent_chain_id is None:
            return []
        return list(self.snapshots.layer_dirs(self.state.parent_chain_id))

    # -- run (kiln.container.run) --------------------------------------------------------

    def run_options(self, args: Sequence[str], opts: Any = None, **overrides: Any) -> Any:
        """The ``RunOptions`` for ``args``: see ``kiln.container.run.run_options``."""
        return run_options(self, args, opts, **overrides)

    def run(self, args: Sequence[str], opts: Any = None, **overrides: Any) -> int:
        """Run ``args`` in the container (runc or chroot); returns the exit code."""
        return run_in(self, args, opts, **overrides)

    # -- copy / add -----------------------------------------------------------------------

    def copy(
        self,
        sources: Sequence[str],
        dest: str,
        context_dir: str = ".",
        chown: str | None = None,
        chmod: str | None = None,
        from_root: str | None = None,
        *,
        tmpdir: str | None = None,
        keep_owner: bool = False,
        known_digest: Any = None,
        include: Any = None,
        urls: bool = False,
    ) -> CopyOutcome:
        """Docker COPY: ``sources`` relative to ``context_dir`` (or ``from_root``) -> ``dest``.

        ``keep_owner`` (COPY --from in a Dockerfile): without ``chown``, entries keep their
        source's uid/gid instead of 0:0. ``known_digest``, ``include``, ``urls``: see
        ``copy_into``.
        """
        return self._copy(
            sources, dest, add=False, context_dir=from_root or context_dir, chown=chown,
            chmod=chmod, tmpdir=tmpdir, keep_owner=keep_owner, known_digest=known_digest,
            include=include, urls=urls,
        )  # fmt: skip

    def add(
        self,
        sources: Sequence[str],
        dest: str,
        context_dir: str = ".",
        chown: str | None = None,
        chmod: str | None = None,
        from_root: str | None = None,
        *,
        tmpdir: str | None = None,
        keep_owner: bool = False,
        known_digest: Any = None,
        keep_git_dir: bool = False,
        unpack: bool | None = None,
        git_commits: dict[str, str] | None = None,
        include: Any = None,
    ) -> CopyOutcome:
        """Docker ADD: COPY plus local tar extraction, http(s) downloads and git sources
        (``keep_git_dir``, ``unpack``, ``git_commits``: see ``copy_into``)."""
        return self._copy(
            sources, dest, add=True, context_dir=from_root or context_dir, chown=chown,
            chmod=chmod, tmpdir=tmpdir, keep_owner=keep_owner, known_digest=known_digest,
            include=include, keep_git_dir=keep_git_dir, unpack=unpack, git_commits=git_commits,
        )  # fmt: skip

    def _copy(
        self,
        sources: Sequence[str],
        dest: str,
        *,
        add: bool,
        context_dir: str,
        chown: str | None,
        chmod: str | None,
        tmpdir: str | None,
        keep_owner: bool,
        known_digest: Any,
        include: Any,
        keep_git_dir: bool = False,
        unpack: bool | None = None,
        git_commits: dict[str, str] | None = None,
        urls: bool = False,
    ) -> CopyOutcome:
        """``copy_into`` the mounted rootfs, recorded as added content."""
        # start-up: the copy code (tar, git and URL sources) only for COPY/ADD
        from .copy_add import copy_into

        with self.mounted() as rootfs:
            outcome = copy_into(
                rootfs,
                list(sources),
                dest,
                context_dir=context_dir,
                workdir=self.config.runtime.working_dir or "/",
                chown=chown,
                chmod=chmod,
                add=add,
                tmpdir=tmpdir,
                keep_owner=keep_owner,
                known_digest=known_digest,
                keep_git_dir=keep_git_dir,
                unpack=unpack,
                git_commits=git_commits,
                include=include,
                urls=urls,
            )
        self.state.added.append(
            AddedContent("add" if add else "copy", list(sources), dest, outcome.digest)
        )
        self.save()
        return outcome

    def make_dirs(self, dirs: Sequence[tuple[str, str]]) -> list[str]:
        """Create the missing directories ``(path, user)`` and their missing parents, 0755
        and owned by ``user`` (resolved in the container; "" or unknown: root), as WORKDIR
        and VOLUME leave them in an image. Returns the paths that were created."""
        # start-up: the copy code only for WORKDIR/VOLUME directories
        from .copier import CopyOptions, make_dirs

        made = []
        with self.mounted() as rootfs, SafeRoot.opened(rootfs) as root:
            for path, user in dirs:
                owner = (0, 0)
                if user:
                    with contextlib.suppress(InvalidArgument):
                        resolved = resolve_user(rootfs, user)
                        owner = (resolved.uid, resolved.gid)
                if make_dirs(root, path, CopyOptions(owner=owner), "create directory").created:
                    made.append(path)
        return made

    # -- history --------------------------------------------------------------------------

    def add_history(self, created_by: str, empty_layer: bool = True, comment: str = "") -> None:
        """Record a history entry to be written at commit (metadata steps: ``empty_layer``)."""
        self.state.history.append(
            History(
                created=rfc3339(),
                created_by=created_by,
                author=self.config.image.author,
                comment=comment,
                empty_layer=empty_layer,
            )
        )

    def set_pending_history(self, entries: Sequence[History]) -> None:
        """The history entries the next commit writes before its own, replacing those
        pending (a build's metadata steps since its last layer)."""
        self.state.history = list(entries)

    def set_history_defaults(
        self, *, created_by: str | None = None, comment: str | None = None
    ) -> None:
        """What the history entry of every later commit says unless the commit says
        otherwise (``kiln config --created-by``, ``--history-comment``); None keeps it."""
        if created_by is not None:
            self.state.created_by = created_by
        if comment is not None:
            self.state.history_comment = comment

    # -- inspection -----------------------------------------------------------------------

    def diff(self) -> list[Change]:
        """A/C/D changes against the image."""
        if self.is_copy_snapshot():
            with self.base_view() as lower:
                return diff_trees(lower, self.upper_dir())
        return changes_from_overlay_upper(self.upper_dir(), self.lower_dirs())

    def export(self, out: Any, on_bytes: Callable[[int], None] | None = None) -> int:
        """Write the merged filesystem as an uncompressed tar to ``out``; returns its size.
        ``on_bytes(n)``: the bytes written so far, after every write (progress)."""
        # start-up: only export writes a tar here
        from kiln.archive.tar_writer import scan_tree, write_layer

        if on_bytes is not None:
            out = CountedWrites(out, on_bytes)
        with self.mounted() as rootfs:
            result = write_layer(scan_tree(rootfs), out, compression=Compression.NONE)
        return result.size

    # -- commit / delete ------------------------------------------------------------------

    def commit(
        self,
        name: str | None = None,
        *,
        format: str | None = None,  # noqa: A002 - the documented keyword
        timestamp: int | None = None,
        squash: bool = False,
        compression: str = "gzip",
        omit_history: bool = False,
        changes: Sequence[str] = (),
        created_by: str | None = None,
        history_comment: str | None = None,
        rm: bool = False,
        history_entry: bool = True,
        force_layer: bool = False,
        also: Callable[[ImageRecord], None] | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> ImageRecord:
        """Write the container's changes as a new image (named ``name`` if given); returns
        its record. The keywords are ``kiln.container.commit.CommitOptions``'s; ``rm``
        deletes the container afterwards; ``also(record)`` (a build's cache entry) is
        written in the transaction that records the image; ``on_bytes(n)`` hears the new
        layer's bytes written so far (progress). The container itself is not changed."""
        # start-up: kiln.image costs ~0.15 s (see the module docstring)
        from . import commit as image_commit

        opts = image_commit.CommitOptions(
            image_format=format or self.state.format, compression=compression,
            timestamp=timestamp, squash=squash, omit_history=omit_history,
            changes=tuple(changes), created_by=created_by, history_comment=history_comment,
            history_entry=history_entry, force_layer=force_layer,
        )  # fmt: skip
        then = None if also is None else (lambda record, _config: also(record))
        return self._commit(opts, name, rm, also=then, on_bytes=on_bytes).record

    def _commit(
        self, opts: Any, name: str | None, rm: bool = False, also: Any = None,
        on_bytes: Callable[[int], None] | None = None, settle: bool = False,
    ) -> Any:  # fmt: skip
        """``commit`` with its ``CommitOptions``; returns the new image in memory.
        ``also``: see ``commit_image``. ``settle``: the upper is to become the layer's
        snapshot; each entry gets the time the layer holds as it is written (``settled``)."""
        # start-up: kiln.image costs ~0.15 s (see the module docstring)
        from . import commit as image_commit

        pending = image_commit.Pending(
            base_id=self.state.image_id, config=self.config, history=tuple(self.state.history),
            created_by=self.state.created_by, history_comment=self.state.history_comment,
            base=self.image,
        )  # fmt: skip
        with image_commit.layer_changes(self, squash=opts.squash) as entries:
            if settle and entries is not None:
                entries = image_commit.settled(self.upper_dir(), entries, opts.timestamp)
            image = image_commit.commit_image(self.store, entries, pending, opts, name, also,
                                              on_bytes=on_bytes)  # fmt: skip
        if rm:
            self.delete()
        return image

    def commit_step(
        self,
        *,
        created_by: str,
        image_format: str = "oci",
        compression: str = "gzip",
        timestamp: int | None = None,
        name: str | None = None,
        squash: bool = False,
        also: Callable[[ImageRecord], None] | None = None,
    ) -> ImageRecord:
        """Commit like ``commit`` (the pending history, then ``created_by`` for this step; a
        step that changed nothing still gets its empty layer), then go on from the new image:
        the upper dir becomes the new layer's snapshot (no copy, no unpack) under a fresh,
        empty upper; pending history and additions are cleared.

        The container's new state is saved, and ``also(record)`` (a build's cache entry)
        written, in the transaction that records the image: one write per step. The
        snapshot moves on right after; a kill between leaves a build container whose
        snapshot key is not made yet, removed with its process's leftovers (the old
        snapshot, no longer named, goes with the next GC)."""
        old_chain = self.state.parent_chain_id
        old_key = self.state.snapshot_key
        # start-up: kiln.image costs ~0.15 s (see the module docstring)
        from . import commit as image_commit

        opts = image_commit.CommitOptions(
            image_format=image_format or self.state.format, compression=compression,
            timestamp=timestamp, created_by=created_by, squash=squash, force_layer=True,
        )  # fmt: skip
        new_key = self._new_snapshot_key()
        rebased: list[ContainerState] = []

        def save_rebased(record: ImageRecord, config: ImageConfig) -> None:
            chain = record.layers[-1] if record.layers else None
            rebased.append(self._rebased_state(record.id, config, chain, new_key))
            self.store.put_container(self._record_of(rebased[0]))
            if also is not None:
                also(record)

        # the upper becomes the new layer's snapshot: it gets the times the layer holds
        image = self._commit(opts, name, also=save_rebased, settle=not squash)
        rec = image.record
        new_chain = rec.layers[-1] if rec.layers else None
        if squash or new_chain == old_chain:
            # nothing adoptable (no new layer, or a squashed tree): start a fresh upper
            with contextlib.suppress(NotFound):
                self.snapshots.remove(old_key)
            self.snapshots.prepare(new_key, new_chain, volatile=self.volatile_mounts)
        else:
            # the snapshot goes on as new_key on the new layer, in the same directory. The
            # upper was written without syncs (a volatile overlay, or no overlay): it is
            # recorded without waiting for the disk, marked with the boot id, since the
            # layer's blob, published durable by the commit above, re-derives it after
            # another boot (the snapshotter drops it then; the next use unpacks the blob)
            self.snapshots.commit(old_key, new_chain, old_chain,
                                  next_key=new_key, synced=False)  # fmt: skip
        self._go_on(image, rebased[0])
        return rec

    def adopt_image(self, image_id: str) -> None:
        """Drop the container's changes and go on from ``image_id`` (e.g. a cache hit), with
        an empty upper; pending history and additions are cleared."""
        # start-up: kiln.image costs ~0.15 s (see the module docstring)
        from kiln.image import open_store_image, unpack_image

        img = open_store_image(self.store, image_id)
        chain = unpack_image(self.store, self.snapshots, img)
        with contextlib.suppress(NotFound):
            self.snapshots.remove(self.state.snapshot_key)
        new_key = self._new_snapshot_key()
        self.snapshots.prepare(new_key, chain, volatile=self.volatile_mounts)
        self._rebase(img, chain, new_key)

    def _new_snapshot_key(self) -> str:
        return f"{self.snapshot_key_prefix(self.id)}-{os.urandom(4).hex()}"

    @staticmethod
    def snapshot_key_prefix(cid: str) -> str:
        """The first snapshot key of container ``cid``; its later ones add ``-<suffix>``."""
        return f"kiln-container-{cid}"

    def _rebase(self, image: Any, chain: str | None, key: str) -> None:
        """Make this a container of ``image`` (a ``StoreImage``, kept in memory for the
        next commit) on the prepared snapshot ``key`` over ``chain``, with the image's
        config (annotations kept) and nothing pending; saved."""
        state = self._rebased_state(image.id, image.config, chain, key)
        self.store.put_container(self._record_of(state))
        self._go_on(image, state)

    def _rebased_state(
        self, image_id: str, config: ImageConfig, chain: str | None, key: str
    ) -> ContainerState:
        """The state of this container gone on from image ``image_id`` (``_rebase``)."""
        return replace(
            self.state, snapshot_key=key, parent_chain_id=chain, image_id=image_id,
            history=[], added=[], created_by="", config=config.evolve(),
            annotations=dict(self.config.annotations),
        )  # fmt: skip

    def _record_of(self, state: ContainerState) -> ContainerRecord:
        return replace(self.record, state=state.to_json(), snapshot_key=state.snapshot_key)

    def _go_on(self, image: Any, state: ContainerState) -> None:
        """Take ``state`` (saved) as this container's, on ``image`` kept in memory."""
        self.image = image
        self.state = state
        self.record = self._record_of(state)
        self.config = ConfigEditor(state.config, dict(state.annotations))

    def delete(self) -> None:
        """Unmount, drop the snapshot (with its mount point) and forget the container.
        Both or neither: a Ctrl-C meanwhile is raised once the row is gone too.

        Every snapshot of the container goes, not only the one its state names: a step
        moving it onto a new key (``commit_step``, ``adopt_image``) makes that key before
        the state in memory names it, and a Ctrl-C between leaves the state on the old."""
        with signals_held():
            keys = [self.state.snapshot_key]
            first = self.snapshot_key_prefix(self.id)
            with contextlib.suppress(Exception):  # the state's key goes even if listing fails
                keys += [k for k in self.snapshots.list_active()
                         if k == first or k.startswith(f"{first}-")]  # fmt: skip
            for key in dict.fromkeys(keys):
                with contextlib.suppress(NotFound):
                    self.snapshots.remove(key)
            with contextlib.suppress(NotFound):
                self.store.delete_container(self.id)


def _undo_creation(store: Store, snaps: Any, cid: str, key: str) -> None:
    """Remove what ``from_image`` made of a container it could not finish: its row, if
    inserted, then its snapshot."""
    with contextlib.suppress(Exception):
        store.delete_container(cid)
    snaps.discard(key)


def _recycled_work(snapshots: Any, key: str, spec: Any) -> bool:
    """After an unmount: a fresh overlay work dir for the next mount, the used one deleted
    in the background (``Snapshotter.recycle_work``: no marker to remove, nothing for the
    kernel to clean). False where that cannot be done (then remove the marker instead)."""
    recycle = getattr(snapshots, "recycle_work", None)
    if recycle is None or spec.type != "overlay" or not spec.work:
        return False
    try:
        recycle(key)
    except (NotFound, OSError):
        return False
    return True


def _is_mountpoint(path: str) -> bool:
    # start-up: kiln.snapshot costs ~0.03 s (see the module docstring)
    from kiln.snapshot.mount import is_mountpoint

    return is_mountpoint(path)


def _found_name(image: str, base: ImageRecord) -> str:
    """The image's full name the container records (``busybox`` -> ``docker.io/library/
    busybox:latest``), as buildah's FromImage and ``containers`` show it; an ID, a digest
    or a name the image is not stored under stays as written. A short name found as
    ``localhost/<name>`` (a local build's) is recorded so, as buildah records it."""
    try:
        names = [str(Reference.parse(image))]
        if is_short_name(image):
            names.append(str(Reference.parse("localhost/" + image)))
    except InvalidArgument:
        return image
    return next((n for n in names if n in base.names), image)
