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
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kiln.build import explain
from kiln.build.cache_key import key_of, step_inputs
from kiln.build.instructions import Instruction
from kiln.build.stages import Stage
from kiln.container import Builder, ConfigEditor
from kiln.errors import InvalidArgument, NotFound, ProcessFailed
from kiln.oci import History
from kiln.util.process_owner import this_process
from kiln.util.timefmt import rfc3339

if TYPE_CHECKING:
    from kiln.build.executor import Executor

__all__ = ["StageRun", "StepFailed"]


class StepFailed(ProcessFailed):
    """A RUN exited non-zero; ``exit_code`` is what podman exits with."""


class StageRun:
    def __init__(self, ex: Executor, stage: Stage, is_target: bool) -> None:
        self.ex = ex
        self.stage = stage
        self.is_target = is_target
        self.pos = stage.index + 1
        self.args = ex.build_args.stage()
        self.lex = ex.lex
        self.editor: ConfigEditor = ConfigEditor(ex.scratch_config())
        self.base_id: str | None = None
        self.image_id: str | None = None  # the image the current state is on
        self.key = ""
        self.pending: list[History] = []
        self.builder: Builder | None = None
        self.dirty = False  # the builder holds uncommitted filesystem changes
        self.cmd_set = False
        self.env_set_here: set[str] = set()  # names an ENV of this stage has set
        # directories WORKDIR and VOLUME ask for: (path, owner, volume); made before the next
        # filesystem step, and WORKDIR's also at the end of the stage
        self.wanted_dirs: list[tuple[str, str, bool, int]] = []
        self.layers = ex.opts.layers and not (is_target and (ex.opts.squash or ex.opts.squash_all))
        # --no-cache and --no-cache-filter: nothing is read from the cache; what the stage
        # builds is still stored in it
        self.use_cache = (
            self.layers and not ex.opts.no_cache and stage.index not in ex.no_cache_stages
        )
        # the step being run (for timings, cache facts and --explain)
        self.step_n = 0
        self.step_text = ""
        self.step_started = 0.0
        self.step_cache: dict[str, Any] | None = None
        self.step_image: str | None = None
        self.started = time.time()
        self.inputs: dict[str, Any] = {}  # what went into self.key (kiln.build.explain)
        self.first_change: str | None = None  # the first step of the stage not seen before

    # -- environment ------------------------------------------------------------------

    @property
    def config_env(self) -> dict[str, str]:
        return self.editor.env()

    def set_env(self, key: str, value: str) -> None:
        """ENV as buildah writes it: a variable this stage already set keeps its place; one
        from the base image moves to the end (``ENV PATH=/x:$PATH`` puts PATH last)."""
        self.editor.set_env(key, value, in_place=key in self.env_set_here)
        self.env_set_here.add(key)

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
        where = f"{self.ex.dockerfile_name}:{instr.line}"
        try:
            yield
        except (InvalidArgument, NotFound) as exc:
            if str(exc).startswith(where + ":"):
                raise
            raise type(exc)(f"{where}: {exc}") from None

    # -- the key chain and the cache ----------------------------------------------------

    def next_key(self, instr: Instruction | None, **parts: Any) -> str:
        self.inputs = step_inputs(self.key, instr, settings=self.ex.key_settings, **parts)
        self.key = key_of(self.inputs)
        return self.key

    # -- step timings, cache facts and --explain -------------------------------------------

    def begin_step(self, n: int, total: int, text: str, line: int) -> None:
        self.step_n, self.step_text, self.step_started = n, text, time.time()
        self.step_cache, self.step_image = None, None
        self.ex.progress.step(self.pos, n, total, text, line)

    def end_step(self, state: str | None = None) -> None:
        """The step's end event; ``state`` defaults to cached/done from what happened."""
        if not self.step_n:
            return
        if state is None:
            state = "cached" if self.step_cache and self.step_cache.get("hit") else "done"
        image_id = self.step_image
        if self.step_n == 1 and image_id is None:
            image_id = self.base_id  # the FROM step: the base it set the stage on
        self.ex.progress.step_end(self.pos, self.step_n, state, self.step_started,
                                  cache=self.step_cache, image_id=image_id)  # fmt: skip
        self.step_n = 0

    def cached(self, key: str) -> str | None:
        if not self.use_cache:
            return None
        store = self.ex.store
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
        lookup = self.ex.opts.cache_lookup
        image_id = lookup(key) if lookup is not None else None
        if image_id is not None:
            self.ex.store.put_cache(key, image_id)
        return image_id

    def remember(self, key: str, image_id: str) -> None:
        """Note a cached step for ``--cache-to`` (hits and new images alike)."""
        self.ex.cache_log.append((self.stage.index, key, image_id))

    def adopt_image(self, image_id: str) -> None:
        """Continue from ``image_id`` (a cache hit): its config, nothing pending."""
        from kiln.image import open_store_image

        img = open_store_image(self.ex.store, image_id)
        self.image_id = image_id
        self.editor = ConfigEditor(img.config.evolve(), dict(self.editor.annotations))
        self.pending = []
        self.wanted_dirs = []
        self.drop_builder()

    # -- directories WORKDIR and VOLUME make ---------------------------------------------

    def want_dir(self, path: str, user: str, *, volume: bool, line: int = 0) -> None:
        """WORKDIR's directory (owned by ``user``; made even at the end of the stage, as
        Docker and BuildKit do) or a VOLUME's (root's; made only when a later step works on
        the filesystem, as buildah and Docker do). ``line``: the instruction's, for errors."""
        if path and path != "/":
            self.wanted_dirs.append((path, user, volume, line))

    def make_wanted_dirs(self, b: Builder, *, at_end: bool = False) -> None:
        wanted = [(p, u, n) for p, u, volume, n in self.wanted_dirs if not (at_end and volume)]
        self.wanted_dirs = []
        if not wanted:
            return
        try:
            made = b.make_dirs([(p, u) for p, u, _ in wanted])
        except InvalidArgument as exc:
            # name the WORKDIR/VOLUME line whose directory could not be made
            line = next((n for p, _, n in wanted if f" {p}:" in str(exc)), 0)
            if not line:
                raise
            raise InvalidArgument(f"{self.ex.dockerfile_name}:{line}: {exc}") from None
        if made:
            self.dirty = True

    # -- history ----------------------------------------------------------------------

    def note_history(self, created_by: str) -> None:
        self.pending.append(
            History(created=rfc3339(), created_by=created_by, author=self.editor.image.author,
                    empty_layer=True)
        )  # fmt: skip

    # -- the working container ------------------------------------------------------------

    def ensure_builder(self) -> Builder:
        if self.builder is None:
            self.ex.check_cancel()
            b = Builder.from_image(
                self.ex.ctx,
                self.image_id,
                pull_policy="missing",
                image_format=self.ex.opts.image_format,
                owner=this_process(),  # removed by the next kiln command if this one is killed
            )
            self.ex.track(b)
            b.volatile_mounts = True  # thrown away, or synced by commit_step: no unmount syncs
            b.config = self.editor
            self.builder = b
        return self.builder

    def drop_builder(self) -> None:
        if self.builder is not None:
            self.ex.untrack(self.builder)
            with contextlib.suppress(Exception):
                self.builder.delete()
            self.builder = None
            self.dirty = False

    def use_cache_hit(self, key: str) -> str | None:
        """Continue from the image cached under ``key``, if any (printed as podman does)."""
        hit = self.cached(key)
        if hit is not None:
            self.remember(key, hit)
            self.step_cache = {"hit": True, "key": key, "reason": ""}
            self.step_image = hit
            self.adopt_image(hit)
            self.ex.progress.cache_hit(hit)
            self.ex.cache_hits += 1
            self.ex.progress.layer(hit)
        return hit

    def layer_step(
        self, instr: Instruction, action: Callable[[Builder], str], **key_parts: Any
    ) -> None:
        """A RUN/COPY/ADD: a cache hit, or ``action`` (returns created_by) then a commit."""
        key = self.next_key(instr, **key_parts)
        if self.use_cache_hit(key) is not None:
            return
        explain.note_miss(self, key, instr)
        b = self.ensure_builder()
        self.make_wanted_dirs(b)
        created_by = action(b)
        self.dirty = True
        if not self.layers:
            self.note_history(created_by)
            return
        b.state.history = list(self.pending)
        rec = b.commit_step(
            created_by=created_by, image_format=self.ex.opts.image_format,
            compression=self.ex.opts.compression, timestamp=self.ex.opts.timestamp,
        )  # fmt: skip
        self.dirty = False
        self.pending = []
        self.image_id = rec.id
        self.editor = b.config
        with self.ex.store.transaction():  # one write: the entry and what went into its key
            self.ex.store.put_cache(key, rec.id)
            explain.remember_inputs(self, key, instr)
        self.remember(key, rec.id)
        self.step_image = rec.id
        self.ex.progress.layer(rec.id)

    def meta_step(self, instr: Instruction, created_by: str, **key_parts: Any) -> None:
        key = self.next_key(instr, **key_parts)
        explain.note_meta_key(self, key, instr)
        self.note_history(created_by)

    # -- the end of the stage -------------------------------------------------------------

    def finish(self, names: list[str]) -> str:
        """Commit what is not committed yet; returns the stage's image ID."""
        opts = self.ex.opts
        extra: dict[str, Any] = {}
        if self.is_target:
            for k, v in opts.labels.items():
                self.editor.set_label(k, v)
            for k, v in opts.annotations.items():
                self.editor.set_annotation(k, v)
            extra = {"labels": opts.labels, "annotations": opts.annotations,
                     "squash": opts.squash, "squash_all": opts.squash_all}  # fmt: skip
        needs = bool(self.pending) or self.dirty or self.image_id is None
        if self.is_target and opts.image_format == "oci":
            needs = self._drop_docker_only_fields() or needs
        if self.is_target:
            needs = needs or self.image_id == self.base_id or bool(opts.labels or opts.annotations)
            needs = needs or opts.squash or opts.squash_all
            self.ex.progress.commit(self.pos, names)
        if not needs and self.image_id is not None:
            return self.image_id
        key = self.next_key(None, extra=extra)
        if not self.dirty:
            hit = self.use_cache_hit(key)
            if hit is not None:
                return hit
        b = self.ensure_builder()
        self.make_wanted_dirs(b, at_end=True)
        if self.is_target and opts.labels:
            # --label flags are one LABEL step at the end of the build, as buildah 1.29+
            # records them (1.28: one entry a flag; BuildKit: none)
            self.note_history(self._label_created_by())
        pending = list(self.pending)
        last = pending.pop().created_by if pending else "/bin/sh -c #(nop) "
        # a stage that adds nothing (a final stage that only names its base, with
        # annotations) records no entry, as buildah and BuildKit
        adds_entry = bool(self.pending) or self.dirty
        b.state.history = pending
        rec = b.commit(
            None, format=opts.image_format, compression=opts.compression,
            timestamp=opts.timestamp, created_by=last, squash=self.is_target and opts.squash_all,
            history_entry=adds_entry, force_layer=self.dirty,
        )  # fmt: skip
        self.image_id = rec.id
        self.pending = []
        self.dirty = False
        self.drop_builder()
        if self.layers:
            self.ex.store.put_cache(key, rec.id)
            self.remember(key, rec.id)
        self.ex.progress.layer(rec.id)
        return rec.id

    def _drop_docker_only_fields(self) -> bool:
        """OCI configs have no HEALTHCHECK, ONBUILD or SHELL: drop them with podman's warning."""
        rc = self.editor.runtime
        dropped = False
        for what, value, clear in (
            ("HEALTHCHECK", rc.healthcheck, lambda: self.editor.set_healthcheck(None)),
            ("ONBUILD", rc.on_build, self.editor.clear_onbuild),
            ("SHELL", rc.shell, lambda: self.editor.set_shell([])),
        ):
            if value:
                self.ex.progress.warning(
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
            for k, v in self.ex.opts.labels.items()
        )
        return f"/bin/sh -c #(nop) LABEL {labels}"
