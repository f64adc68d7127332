"""One stage being built: its config, its place in the cache-key chain, its working container.

The working container (``kiln.container.Builder``) is created only when a step needs a
filesystem (a cache miss of RUN/COPY/ADD, or the final commit of uncached metadata).
Metadata steps edit the config and queue a history entry (``empty_layer``). With
``--layers`` each RUN/COPY/ADD is committed as an image (the cache points at it) and the
container goes on from it without copying (``Builder.commit_step``); without, the stage is
committed once at its end, its changes as one layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from kiln.build import explain
from kiln.build.args import StageArgs
from kiln.build.cache_key import base_key, instruction_fields, key_of, step_inputs
from kiln.build.instructions import Instruction
from kiln.build.lexer import ShellLex
from kiln.build.stages import Stage
from kiln.container import ConfigEditor
from kiln.errors import InvalidArgument, NotFound, ProcessFailed
from kiln.oci import History, ImageConfig
from kiln.store import ImageRecord
from kiln.util.lazy_dataclass import dataclass
from kiln.util.timefmt import rfc3339

if TYPE_CHECKING:
    from kiln.archive.entry import TarEntry
    from kiln.build.copy_claims import Claims
    from kiln.build.layer_first import WriteFirst, Written
    from kiln.build.services import BuildServices
    from kiln.container import Builder
    from kiln.image import StoreImage

#: a COPY/ADD's layer made without a working container (``kiln.build.copy_direct``): given
#: the tree to plan against (an image's, mounted read-only), what the layers above it that
#: are not unpacked hold (None: none; ``kiln.build.copy_claims``), the working directory,
#: the (path, user)
#: of the directories WORKDIR and VOLUME want made first, where file digests come from
#: (None: the context's) and a stack that holds what the entries read from (a ``--from``
#: tree's mount) until the layer is written: (created_by, the layer's entries, what the
#: layer holds), or None
DirectLayer = Callable[
    [str, "Claims | None", str, list[tuple[str, str]],
     "Callable[[os.stat_result, str], str | None] | None", contextlib.ExitStack],
    "tuple[str, Iterable[TarEntry], Claims] | None",
]  # fmt: skip

__all__ = ["StageRun", "StepFailed"]


class StepFailed(ProcessFailed):
    """A RUN exited non-zero; ``exit_code`` is what podman exits with."""


@dataclass
class _Step:
    """The step being run: for timings, cache facts and --explain (``n`` 0: none)."""

    n: int = 0
    started: float = 0.0
    cache: dict[str, Any] | None = None
    image: str | None = None


class StageRun:
    """One stage's state. Only its own methods change it: dispatchers read ``editor``,
    ``args`` and ``config_env`` and call the methods below; what they need of the build
    comes from the ``BuildServices`` they are given."""

    def __init__(
        self,
        build: BuildServices,
        stage: Stage,
        *,
        is_target: bool,
        args: StageArgs,
        lex: ShellLex,
        no_cache: bool = False,
    ) -> None:
        self._build = build
        self.stage = stage
        self.is_target = is_target
        self.pos = stage.index + 1
        self.args = args
        self.lex = lex
        self.started = time.time()
        opts = build.opts
        self.layers = opts.layers and not (is_target and (opts.squash or opts.squash_all))
        # --no-cache and --no-cache-filter (``no_cache``): nothing is read from the cache;
        # what the stage builds is still stored in it
        self.use_cache = self.layers and not opts.no_cache and not no_cache
        self._editor = ConfigEditor(build.scratch_config())
        self._base_id: str | None = None
        self._image_id: str | None = None  # the image the current state is on
        self._key = ""
        self._pending: list[History] = []
        self._builder: Builder | None = None
        self._dirty = False  # the builder holds uncommitted filesystem changes
        #: after COPY layers written straight (not unpacked): the image below the first of
        #: them and what they hold; the next direct COPY plans against that image
        self._direct_below: tuple[str | None, Claims] | None = None
        #: the image tree direct steps plan against, kept mounted for the next one: (image,
        #: path, what unmounts it)
        self._view: tuple[str | None, str, contextlib.ExitStack] | None = None
        self._base_config_changed = False  # FROM stamped the base's config (set_base)
        self._cmd_set = False
        self._env_set_here: set[str] = set()  # names an ENV of this stage has set
        # directories WORKDIR and VOLUME ask for: (path, owner, volume, line); made before
        # the next filesystem step, and WORKDIR's also at the end of the stage
        self._wanted_dirs: list[tuple[str, str, bool, int]] = []
        self._step = _Step()
        self._last_step = False  # the step under way is the stage's last
        self._inputs: dict[str, Any] = {}  # what went into self._key (kiln.build.explain)
        self._first_change: str | None = None  # the first step of the stage not seen before
        self._env_split: tuple[tuple[str, ...] | None, dict[str, str]] = (None, {})

    # -- what others may read -------------------------------------------------------------

    @property
    def editor(self) -> ConfigEditor:
        """The stage's config; metadata steps edit it through its methods."""
        return self._editor

    @property
    def base_id(self) -> str | None:
        return self._base_id

    @property
    def image_id(self) -> str | None:
        return self._image_id

    # -- the base ---------------------------------------------------------------------

    def set_base(
        self, base_id: str | None, config: ImageConfig, platform: str, key_note: str = ""
    ) -> None:
        """FROM: the stage starts on ``base_id`` (None: scratch) with ``config``;
        ``key_note``: what FROM changed in the base's config, for the steps' cache keys."""
        self._base_id = self._image_id = base_id
        self._direct_below = None
        self._editor = ConfigEditor(config)
        self._key = base_key(base_id, platform) + key_note
        self._base_config_changed = bool(key_note)  # the base is not the stage's image then

    # -- environment and commands --------------------------------------------------------

    @property
    def config_env(self) -> dict[str, str]:
        """The config's ENV as a dict, split once per change of it: every instruction
        reads it, and a stage's variables may hold megabytes (``_check_growth``)."""
        env = self._editor.runtime.env
        if self._env_split[0] is not env:
            self._env_split = (env, self._editor.env())
        return dict(self._env_split[1])

    def set_env(self, key: str, value: str) -> None:
        """ENV as buildah writes it: a variable this stage already set keeps its place; one
        from the base image moves to the end (``ENV PATH=/x:$PATH`` puts PATH last)."""
        self._editor.set_env(key, value, in_place=key in self._env_set_here)
        self._env_set_here.add(key)

    def set_cmd(self, cmd: list[str]) -> None:
        self._editor.set_cmd(cmd)
        self._cmd_set = True

    def set_entrypoint(self, entrypoint: list[str]) -> None:
        """ENTRYPOINT; it resets a CMD the base image gave (not one this stage set)."""
        self._editor.set_entrypoint(entrypoint)
        if not self._cmd_set:
            self._editor.set_cmd(None)

    def expand_env(self) -> dict[str, str]:
        return self.args.env(self.config_env)

    def expand(self, instr: Instruction) -> tuple[Instruction, dict[str, str]]:
        """Expand with the stage's ARGs and ENV; returns the used names with their values."""
        env = self.expand_env()
        with self.at_line(instr):
            expanded, used = instr.expand(self.lex, env)
        return expanded, {k: env[k] for k in sorted(used) if k in env}

    @contextlib.contextmanager
    def at_line(self, instr: Instruction) -> Iterator[None]:
        """Prefix an ``InvalidArgument`` or ``NotFound`` raised inside (an expansion error
        such as ``${V:?msg}``, a missing secret or mount source) with ``Containerfile:N:``,
        as every other build error has it."""
        where = f"{self._build.dockerfile_name}:{instr.line}"
        try:
            yield
        except (InvalidArgument, NotFound) as exc:
            if str(exc).startswith(where + ":"):
                raise
            raise type(exc)(f"{where}: {exc}") from None

    # -- the key chain and the cache ----------------------------------------------------

    def _next_key(self, instr: Instruction | None, **parts: Any) -> str:
        self._inputs = step_inputs(self._key, instr, settings=self._build.key_settings, **parts)
        self._key = key_of(self._inputs)
        return self._key

    def _facts(self, instr: Instruction | None) -> explain.StepFacts:
        """The running step as ``kiln.build.explain`` records and compares it."""
        b = self._build
        where = explain.locator(
            b.context.root, b.dockerfile_name, self.stage.name or str(self.stage.index),
            self._step.n,
        )  # fmt: skip
        return explain.StepFacts(where, self._inputs, self._base_id, instr, b.context.manifest)

    # -- step timings, cache facts and --explain -------------------------------------------

    def begin_step(self, n: int, total: int, text: str, line: int) -> None:
        self._step = _Step(n, time.time())
        self._last_step = n == total
        self._build.progress.step(self.pos, n, total, text, line)

    def end_step(self, state: str | None = None) -> None:
        """The step's end event; ``state`` defaults to cached/done from what happened."""
        step = self._step
        if not step.n:
            return
        if state is None:
            state = "cached" if step.cache and step.cache.get("hit") else "done"
        image_id = step.image
        if step.n == 1 and image_id is None:
            image_id = self._base_id  # the FROM step: the base it set the stage on
        self._build.progress.step_end(self.pos, step.n, state, step.started,
                                      cache=step.cache, image_id=image_id)  # fmt: skip
        self._step = _Step()

    def _cached(self, key: str) -> str | None:
        if not self.use_cache:
            return None
        store = self._build.store
        image_id = store.get_cache(key)
        if image_id is None:
            return self._imported(key)
        try:
            store.get_image(image_id)
        except NotFound:
            with contextlib.suppress(Exception):
                store.delete_cache(key)
            return self._imported(key)
        return image_id

    def _imported(self, key: str) -> str | None:
        """A step another machine built: ``--cache-from`` caches (``opts.cache_lookup``
        copies the image into the store on a hit); it joins the local cache."""
        lookup = self._build.opts.cache_lookup
        image_id = lookup(key) if lookup is not None else None
        if image_id is not None:
            self._build.store.put_cache(key, image_id)
        return image_id

    def _adopt_image(self, image_id: str) -> None:
        """Continue from ``image_id`` (a cache hit): its config, nothing pending."""
        img = self._build.open_image(image_id)
        self._image_id = image_id
        self._direct_below = None
        self._editor = ConfigEditor(img.config.evolve(), dict(self._editor.annotations))
        self._pending = []
        self._wanted_dirs = []
        self.drop_builder()

    def _note_miss(self, key: str, instr: Instruction | None) -> None:
        """A RUN/COPY/ADD missed the cache: its reason goes to the step's facts and events."""
        facts = self._facts(instr)
        reason = explain.miss_reason(
            self._build.store, key, facts, layers=self.layers,
            no_cache=self._build.opts.no_cache, earlier_change=self._first_change,
        )  # fmt: skip
        self._step.cache = {"hit": False, "key": key, "reason": reason}
        if self._first_change is None:
            self._first_change = explain.first_change_text(facts)
        self._build.progress.cache_miss(self.pos, self._step.n, facts.text, reason)

    # -- directories WORKDIR and VOLUME make ---------------------------------------------

    def want_dir(self, path: str, user: str, *, volume: bool, line: int = 0) -> None:
        """WORKDIR's directory (owned by ``user``; made even at the end of the stage, as
        Docker and BuildKit do) or a VOLUME's (root's; made only when a later step works on
        the filesystem, as buildah and Docker do). ``line``: the instruction's, for errors."""
        if path and path != "/":
            self._wanted_dirs.append((path, user, volume, line))

    def _make_wanted_dirs(self, b: Builder, *, at_end: bool = False) -> None:
        wanted = [(p, u, n) for p, u, volume, n in self._wanted_dirs if not (at_end and volume)]
        self._wanted_dirs = []
        if not wanted:
            return
        try:
            made = b.make_dirs([(p, u) for p, u, _ in wanted])
        except InvalidArgument as exc:
            # name the WORKDIR/VOLUME line whose directory could not be made
            line = next((n for p, _, n in wanted if f" {p}:" in str(exc)), 0)
            if not line:
                raise
            raise InvalidArgument(f"{self._build.dockerfile_name}:{line}: {exc}") from None
        if made:
            self._dirty = True

    # -- history ----------------------------------------------------------------------

    def _note_history(self, created_by: str) -> None:
        self._pending.append(
            History(created=rfc3339(), created_by=created_by, author=self._editor.image.author,
                    empty_layer=True)
        )  # fmt: skip

    # -- the working container ------------------------------------------------------------

    def _ensure_builder(self) -> Builder:
        """The working container, made if need be, with the stage's config as it is now."""
        self.close_view()
        if self._builder is None:
            self._builder = self._build.new_builder(self._image_id)
        self._builder.set_config(self._editor)
        return self._builder

    def _view_of(self, image_id: str | None) -> str:
        """``image_id``'s tree, mounted read-only; kept for the next direct step (a run of
        them plans against one image) until another is asked for or the stage ends."""
        if self._view is not None and self._view[0] == image_id:
            return self._view[1]
        self.close_view()
        with contextlib.ExitStack() as stack:
            path = stack.enter_context(self._build.open_image_root(image_id))
            self._view = (image_id, path, stack.pop_all())
        return path

    def close_view(self) -> None:
        """Unmount the tree direct steps plan against, if mounted."""
        view, self._view = self._view, None
        if view is not None:
            view[2].close()

    def release(self) -> None:
        """The stage is over (built or failed): its working container and view go."""
        try:
            self.drop_builder()
        finally:
            self.close_view()

    def drop_builder(self) -> None:
        if self._builder is not None:
            self._build.release_builder(self._builder)
            self._builder = None
            self._dirty = False

    def _use_cache_hit(self, key: str) -> str | None:
        """Continue from the image cached under ``key``, if any (printed as podman does)."""
        hit = self._cached(key)
        if hit is not None:
            self._build.record_cache(self.stage.index, key, hit, hit=True)
            self._step.cache = {"hit": True, "key": key, "reason": ""}
            self._step.image = hit
            self._adopt_image(hit)
            self._build.progress.cache_hit(hit)
            self._build.progress.layer(hit)
        return hit

    def layer_step(
        self,
        instr: Instruction,
        action: Callable[[Builder], str],
        *,
        direct: DirectLayer | None = None,
        first: WriteFirst | None = None,
        **key_parts: Any,
    ) -> None:
        """A RUN/COPY/ADD: a cache hit, or ``action`` (returns created_by) then a commit.
        ``direct``: the step's layer without a working container, when the stage holds no
        uncommitted changes (the directories WORKDIR/VOLUME want go into that layer).
        ``first``: the key's ``files`` wait for the layer (``kiln.build.layer_first``)."""
        written: Written | None = None
        try:
            if first is not None:
                written = self._write_first(instr, direct, first)
                hashed = first.hashed()
                key_parts["files"] = {**key_parts.get("files", {}), **first.key_files()}
                if written is not None and first.hashed() != hashed:
                    written.close()  # the key read a file itself: the context changed
                    written = None
            key = self._next_key(instr, **key_parts)
            if self._use_cache_hit(key) is not None:
                return
            self._note_miss(key, instr)
            if (
                direct is not None and self.layers and not self._dirty
                and self._direct_step(key, instr, direct, written)
            ):  # fmt: skip
                return
        finally:
            if written is not None:
                written.close()
            if first is not None:
                first.forget()
        b = self._ensure_builder()
        self._make_wanted_dirs(b)
        created_by = action(b)
        self._dirty = True
        if not self.layers:
            self._note_history(created_by)
            return
        opts = self._build.opts
        b.set_pending_history(self._pending)
        # in the step's one write: the image, the container on it, the cache entry and
        # what went into its key
        cache_entry = self._cache_entry(key, instr)
        rec = b.commit_step(
            created_by=created_by, image_format=opts.image_format,
            compression=opts.compression, timestamp=opts.timestamp, also=cache_entry,
        )  # fmt: skip
        self._direct_below = None
        self._dirty = False
        self._pending = []
        self._image_id = rec.id
        self._editor = b.config.copy()
        self._stepped(key, rec.id)

    def _direct_step(
        self, key: str, instr: Instruction, direct: DirectLayer, written: Written | None
    ) -> bool:
        """The step's layer without a working container, committed, if ``direct`` can list
        it (``written``: that layer written before the key; its caller closes it)."""
        image_id, below = self._direct_below or (self._image_id, None)
        view = self._view_of(image_id)
        workdir = self._editor.runtime.working_dir or "/"
        wanted = [(p, u) for p, u, _, _ in self._wanted_dirs]
        known = written.known if written is not None else None
        with contextlib.ExitStack() as held:
            made = direct(view, below, workdir, wanted, known, held)
            ready = None
            if made is not None and written is not None:
                # the listing streams through the comparison (memory does not grow with
                # the files); one that differs is listed again for the layer to write
                ready = written.take(made[1])
                if ready is None:
                    made = direct(view, below, workdir, wanted, known, held)
            if made is None:
                return False
            self._wanted_dirs = []
            image = self._commit_here(iter(made[1]), made[0], force_layer=True,
                                      also=self._cache_entry(key, instr),
                                      written=ready)  # fmt: skip
        self.drop_builder()  # on the image before this step: the next one is new
        self._pending = []
        self._image_id = image.id
        self._direct_below = (image_id, made[2] if below is None else below | made[2])
        self._editor = ConfigEditor(image.config.evolve(),
                                    dict(self._editor.annotations))  # fmt: skip
        self._stepped(key, image.id)
        return True

    def _write_first(
        self, instr: Instruction, direct: DirectLayer | None, first: WriteFirst
    ) -> Written | None:
        """The step's layer written before its key, when it can come from the context and
        the cache is not likely to hold it (a hit would drop it)."""
        if direct is None or not self.layers or self._dirty or self._may_hit(instr):
            return None
        image_id, below = self._direct_below or (self._image_id, None)
        view = self._view_of(image_id)
        workdir = self._editor.runtime.working_dir or "/"
        wanted = [(p, u) for p, u, _, _ in self._wanted_dirs]
        opts = self._build.opts
        from kiln.build.layer_first import write_first  # start-up: a COPY's only

        with contextlib.ExitStack() as held:
            return write_first(
                self._build.store,
                lambda known: direct(view, below, workdir, wanted, known, held),
                first, opts.compression, opts.timestamp,
            )  # fmt: skip

    def _may_hit(self, instr: Instruction) -> bool:
        """Whether the cache may hold this step whatever its files hold: ``--cache-from``
        is asked, or this store has built the same instruction on the same parent before
        (files with new times but the same bytes: a fresh checkout, a context a client
        uploads again). Then the key goes first, as a hit is likely and costs only the
        hash; else a hit needs content the store never saw with this step."""
        if not self.use_cache:
            return False
        if self._build.opts.cache_lookup is not None:
            return True
        try:
            found = self._build.store.cache_inputs_candidates(
                "", "", self._key, instruction_fields(instr), with_inputs=False
            )
        except Exception:  # noqa: BLE001 - a guess: when it cannot be made, the key goes first
            return True
        return any(c["parent"] == self._key and c["same_instruction"] for c in found)

    def _cache_entry(self, key: str, instr: Instruction) -> Callable[[ImageRecord], None]:
        """What a step's commit writes in its one transaction: the cache entry and what went
        into its key (packed now: the write lock is not held while a big COPY's file list
        is compressed)."""
        store = self._build.store
        inputs = explain.packed_inputs(store, key, self._facts(instr))

        def cache_entry(record: ImageRecord) -> None:
            store.put_cache(key, record.id)
            explain.remember_packed(store, inputs)

        return cache_entry

    def _stepped(self, key: str, image_id: str) -> None:
        """The step committed ``image_id``: the cache log and the progress hear of it."""
        self._build.record_cache(self.stage.index, key, image_id, hit=False)
        self._step.image = image_id
        self._build.progress.layer(image_id)

    def _commit_here(
        self, entries: Iterator[TarEntry] | None, created_by: str, *, force_layer: bool,
        history_entry: bool = True, also: Callable[[ImageRecord], None] | None = None,
        written: tuple[Any, Any] | None = None,
    ) -> StoreImage:  # fmt: skip
        """Commit ``entries`` (a layer; None: no change) with the pending history on the
        stage's image, as its working container would, without one: nothing is read from
        a filesystem, so nothing is mounted or unpacked. ``also(record)``: written in the
        commit's transaction. ``written``: that layer already written (result, ingest)."""
        # start-up: kiln.container.commit brings the layer writer, which a fully cached
        # build never needs (the Builder imports it where it commits, for the same reason)
        from kiln.container.commit import CommitOptions, Pending, commit_image

        opts = self._build.opts
        base = self._build.open_image(self._image_id) if self._image_id else None
        pending = Pending(base_id=self._image_id, config=self._editor.copy(),
                          history=tuple(self._pending), base=base)  # fmt: skip
        copts = CommitOptions(
            image_format=opts.image_format, compression=opts.compression,
            timestamp=opts.timestamp, created_by=created_by, history_entry=history_entry,
            force_layer=force_layer,
        )  # fmt: skip
        then = None if also is None else (lambda record, _config: also(record))
        try:
            return commit_image(self._build.store, entries, pending, copts, None, then,
                                written=written)  # fmt: skip
        finally:
            if written is not None:
                written[1].close()  # published by then, or dropped

    def meta_step(self, instr: Instruction, created_by: str, **key_parts: Any) -> None:
        key = self._next_key(instr, **key_parts)
        store = self._build.store
        if explain.is_new_key(store, key):  # the change later misses point at
            facts = self._facts(instr)
            if self._first_change is None:
                self._first_change = explain.first_change_text(facts)
            explain.remember_inputs(store, key, facts)
        self._note_history(created_by)
        if self._build.opts.image_per_step and self.layers:
            self._commit_metadata(key)

    def _commit_metadata(self, key: str) -> None:
        """Docker's classic builder: a metadata step is an image too (cached under its
        key), so the next step's image has it as its parent (``Parent``, ``ParentId``).
        Not while the stage holds changes or a directory WORKDIR wants (made in the next
        layer or at the end, as without it): the steps until then stay pending. VOLUME's
        directories, made only if a later step works on the filesystem, wait on."""
        wanted = self._wanted_dirs
        if self._dirty or not all(volume for _, _, volume, _ in wanted):
            return
        opts = self._build.opts
        finish_adds = self.is_target and bool(opts.labels or opts.annotations or opts.squash
                                              or opts.squash_all)  # fmt: skip
        if self._last_step and not finish_adds:
            # the stage's end commits it, under the key a build without image_per_step
            # gives it: a cache the command line's builds exported serves this one too
            return
        if self._use_cache_hit(key) is not None:
            self._wanted_dirs = wanted  # not in the image the hit continues from
            return
        pending = list(self._pending)
        last = pending.pop()
        self._pending = pending
        image = self._commit_here(None, last.created_by, force_layer=False,
                                  also=lambda record: self._build.store.put_cache(key, record.id))  # fmt: skip
        # a working container is on the image before: the next step makes a new one
        self.drop_builder()
        self._pending = []
        self._image_id = image.id
        self._base_config_changed = False
        self._editor = ConfigEditor(image.config.evolve(), dict(self._editor.annotations))
        self._stepped(key, image.id)

    # -- the end of the stage -------------------------------------------------------------

    def finish(self, names: list[str]) -> str:
        """Commit what is not committed yet; returns the stage's image ID."""
        opts = self._build.opts
        extra: dict[str, Any] = {}
        if self.is_target:
            for k, v in opts.labels.items():
                # a label named "" is the API's to give (dockerd and buildah take it); the
                # command line refuses --label =v before the build
                self._editor.set_label(k, v, empty_name_ok=True)
            for k, v in opts.annotations.items():
                self._editor.set_annotation(k, v)
            extra = {"labels": opts.labels, "annotations": opts.annotations,
                     "squash": opts.squash, "squash_all": opts.squash_all}  # fmt: skip
        needs = bool(self._pending) or self._dirty or self._image_id is None
        needs = needs or self._base_config_changed
        if self.is_target and opts.image_format == "oci":
            needs = self._drop_docker_only_fields() or needs
        if self.is_target:
            # a target that only names its base is that image (buildah and BuildKit give
            # the base's ID, not a copy with a new creation time)
            needs = needs or bool(opts.labels or opts.annotations)
            needs = needs or opts.squash or opts.squash_all
            self._build.progress.commit(self.pos, names)
        if not needs and self._image_id is not None:
            return self._image_id
        key = self._next_key(None, extra=extra)
        if not self._dirty:
            hit = self._use_cache_hit(key)
            if hit is not None:
                return hit
        squash = self.is_target and opts.squash_all
        # no working container yet and none needed (no change, no directory to make, no
        # squash): the commit reads no filesystem, so it goes without one (a layer the
        # build wrote straight from the context stays unpacked)
        fs_free = (
            self._builder is None
            and not self._dirty
            and not squash
            and all(volume for _, _, volume, _ in self._wanted_dirs)
        )
        b = None if fs_free else self._ensure_builder()
        if b is not None:
            self._make_wanted_dirs(b, at_end=True)
        if self.is_target and opts.labels:
            # --label flags are one LABEL step at the end of the build, as buildah 1.29+
            # records them (1.28: one entry a flag; BuildKit: none)
            self._note_history(self._label_created_by())
        store = self._build.store
        # the cache entry goes in the commit's transaction (one write less a build)
        cache_entry = (lambda record: store.put_cache(key, record.id)) if self.layers else None
        pending = list(self._pending)
        last = pending.pop().created_by if pending else "/bin/sh -c #(nop) "
        # a stage that adds nothing (a final stage that only names its base, with
        # annotations) records no entry, as buildah and BuildKit
        adds_entry = bool(self._pending) or self._dirty
        if b is None:
            self._wanted_dirs = []  # VOLUME's: made only for a later filesystem step
            self._pending = pending
            rec_id = self._commit_here(None, last, force_layer=False, history_entry=adds_entry,
                                       also=cache_entry).id  # fmt: skip
        else:
            b.set_pending_history(pending)
            rec_id = b.commit(
                None, format=opts.image_format, compression=opts.compression,
                timestamp=opts.timestamp, created_by=last, squash=squash,
                history_entry=adds_entry, force_layer=self._dirty, also=cache_entry,
            ).id  # fmt: skip
        self._image_id = rec_id
        self._direct_below = None
        self._pending = []
        self._dirty = False
        self.drop_builder()
        if self.layers:
            self._build.record_cache(self.stage.index, key, rec_id, hit=False)
        self._build.progress.layer(rec_id)
        return rec_id

    def _drop_docker_only_fields(self) -> bool:
        """OCI configs have no HEALTHCHECK, ONBUILD or SHELL: drop them with podman's warning."""
        rc = self._editor.runtime
        dropped = False
        for what, value, clear in (
            ("HEALTHCHECK", rc.healthcheck, lambda: self._editor.set_healthcheck(None)),
            ("ONBUILD", rc.on_build, self._editor.clear_onbuild),
            ("SHELL", rc.shell, lambda: self._editor.set_shell([])),
        ):
            if value:
                self._build.progress.warning(
                    f"{what} is not supported for OCI image format and {what} will be ignored. "
                    "Must use `docker` format"
                )
                clear()
                dropped = True
        return dropped

    def _label_created_by(self) -> str:
        """buildah's text for the LABEL step of --label flags: ``LABEL "k"="v" ...``."""
        labels = " ".join(
            f"{json.dumps(k, ensure_ascii=False)}={json.dumps(v, ensure_ascii=False)}"
            for k, v in self._build.opts.labels.items()
        )
        return f"/bin/sh -c #(nop) LABEL {labels}"
