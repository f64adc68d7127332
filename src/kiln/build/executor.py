"""Run a planned Dockerfile: stages in dependency order, independent ones in parallel.

``Executor(ctx, opts, parsed, context, progress).run() -> BuildResult``. ``ctx`` is
anything with ``.store`` and ``.snapshots`` (an ops ``Context``). A stage starts as soon
as the stages it needs are built, up to ``opts.jobs`` at once (default 4; a lone stage
runs on the calling thread so Ctrl-C reaches its RUN). Each stage is a ``StageRun``;
instructions go to one dispatch module per family. A failing step leaves no image for
itself or later steps; working containers are removed on the way out.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kiln.build.args import BuildArgs, host_platform
from kiln.build.context import BuildContext
from kiln.build.dispatch_from import dispatch_from
from kiln.build.dispatch_meta import dispatch_meta
from kiln.build.dispatch_run import dispatch_run
from kiln.build.explain import trim_inputs
from kiln.build.instructions import Add, Copy, Instruction, Run
from kiln.build.lexer import ShellLex
from kiln.build.options import BuildOptions, BuildResult, default_jobs
from kiln.build.parser import ParsedDockerfile
from kiln.build.progress import Progress
from kiln.build.run_mounts import MountSet, parse_secrets, prepared_mounts
from kiln.build.stage_run import StageRun
from kiln.build.stages import BuildPlan, Stage, plan
from kiln.errors import Cancelled, InvalidArgument, KilnError, NotFound
from kiln.image import StoreImage, open_store_image, unpack_image
from kiln.image.transport_names import names_file_transport
from kiln.oci import ImageConfig, Platform, Reference
from kiln.oci.config import DEFAULT_PATH
from kiln.oci.reference import is_short_name
from kiln.snapshot.mount import mounted
from kiln.util.cancel import LinkedFlag, cancel_flag, cancelled_by
from kiln.util.choices import PullPolicy
from kiln.util.held_signals import finish_held, signals_held
from kiln.util.lingering import Lingering
from kiln.util.process_owner import this_process

if TYPE_CHECKING:
    from concurrent.futures import Future

    from kiln.build.mounts import Mount as RunMount
    from kiln.build.named_contexts import NamedContext
    from kiln.container import Builder
    from kiln.runtime import Mount
    from kiln.runtime.ssh_agent import SshSource

__all__ = ["BuildCancel", "Executor", "normalize_tag"]


def normalize_tag(name: str) -> str:
    """``foo`` -> ``localhost/foo:latest`` (podman's naming of unqualified build tags)."""
    ref = Reference.parse(f"localhost/{name}" if is_short_name(name) else name)
    if ref.digest:
        raise InvalidArgument(f'tag "{name}": a tag cannot contain a digest; give NAME[:TAG]')
    return str(ref)


class Executor:
    """One build of one platform. It owns the build's shared state (stage results, the
    cache log, working containers) and is the ``BuildServices`` its stages are given."""

    def __init__(
        self,
        ctx: Any,
        opts: BuildOptions,
        parsed: ParsedDockerfile,
        context: BuildContext,
        progress: Progress | None = None,
        dockerfile_name: str = "Dockerfile",
        named: Mapping[str, NamedContext] | None = None,
        named_dirs: Mapping[str, BuildContext] | None = None,
    ) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.opts = opts
        self.parsed = parsed
        self.context = context
        self.progress = progress or Progress()
        self.dockerfile_name = dockerfile_name
        self.tmpdir = opts.tmpdir
        self.platform = opts.platform or host_platform()
        self.lex = ShellLex(parsed.escape)
        sde = opts.source_date_epoch
        self.build_args = BuildArgs(
            opts.build_args, target_platform=opts.platform,
            implicit={"SOURCE_DATE_EPOCH": str(sde)} if sde is not None else None,
        )  # fmt: skip
        # --build-context: images by name, and directories opened as contexts
        self.named = dict(named or {})
        self.named_dirs = dict(named_dirs or {})
        self.plan: BuildPlan = plan(
            parsed, self.build_args, opts.target, lex=self.lex, named=self.named.keys()
        )
        self.secrets = parse_secrets(opts.secrets)
        self.ssh_sources = _ssh_sources(opts.ssh)
        self.ssh_sockets: dict[str, str] = {}  # --ssh id -> agent socket, while run() runs
        self.no_cache_stages = self._no_cache_stages()
        self.key_settings: dict[str, Any] = {
            "format": opts.image_format, "compression": opts.compression,
            "timestamp": opts.timestamp, "platform": self.platform,
        }  # fmt: skip
        # set by a failing stage to stop its siblings; set too when the caller's flag is
        self.cancel = BuildCancel(opts.cancel if opts.cancel is not None else cancel_flag())
        self.pumps = Lingering("kiln-run-output")  # RUN output readers, kept across steps
        self.results: dict[int, str] = {}
        self.cache_hits = 0
        self.cache_log: list[tuple[int, str, str]] = []  # (stage, key, image id): --cache-to
        self._refs: dict[str, str] = {}
        self._builders: set[Builder] = set()
        self._lock = threading.Lock()
        self.names = [normalize_tag(t) for t in opts.tags]
        self.volumes = self._parse_volumes()

    def _no_cache_stages(self) -> frozenset[int]:
        """The stages --no-cache-filter names (by name, case-insensitive, or index); a name
        no stage has is a warning (BuildKit ignores it silently)."""
        found: set[int] = set()
        for wanted in self.opts.no_cache_filter:
            hits = [s.index for s in self.plan.stages
                    if (s.name or "").lower() == wanted.lower() or str(s.index) == wanted]  # fmt: skip
            if not hits:
                self.progress.warning(f"--no-cache-filter: no stage is named {wanted!r}")
            found.update(hits)
        return frozenset(found)

    # -- the run --------------------------------------------------------------------------

    def run(self) -> BuildResult:
        self.progress.stage_count = len(self.plan.stages)
        self.progress.plan(self._plan_facts())
        if self.parsed.syntax:
            self.progress.note(f"# syntax={self.parsed.syntax} is ignored: kiln builds itself")
        failed = True
        try:
            with (
                _ssh_agents(self.ssh_sources, self.tmpdir) as sockets,  # killed when it ends
                cancelled_by(self.cancel),  # a stage's pull stalled mid-blob stops with it
            ):
                self.ssh_sockets = sockets
                self._schedule()
            failed = False
        finally:
            try:
                self.pumps.close(timeout=30)  # a RUN's reader waits at most this (run_process)
            finally:  # a second Ctrl-C while it waits still removes the working containers
                if (failed and self.opts.force_rm) or (not failed and self.opts.rm):
                    finish_held(self._remove_builders)
            trim_inputs(self.store)  # the steps' --explain inputs, bounded once per build
        image_id = self.results[self.plan.target_index]
        return self._finish(image_id)

    def _plan_facts(self) -> list[dict[str, Any]]:
        """The stages this build runs, for live views and build records (``plan`` event)."""
        out = []
        for index in self.plan.order:
            stage = self.plan.stages[index]
            steps = [self._from_text(stage)] + [i.original for i in stage.instructions]
            out.append({"stage": index + 1, "name": stage.name or "", "steps": steps,
                        "deps": sorted(d + 1 for d in self.plan.deps.get(index, ()))})  # fmt: skip
        return out

    def _schedule(self) -> None:
        order = list(self.plan.order)
        jobs = max(1, self.opts.jobs or default_jobs())
        if jobs == 1 or len(order) == 1:
            for index in order:
                self._build_stage(index)
            return
        # start-up: the thread pool only when stages run in parallel
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        pending = set(order)
        running: dict[Future, int] = {}
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="kiln-stage") as pool:
            try:
                while pending or running:
                    ready = [
                        i
                        for i in order
                        if i in pending and self.plan.deps[i] <= self.results.keys()
                    ]
                    for index in ready[: jobs - len(running)]:
                        pending.discard(index)
                        # in a copy of this context: what the stage writes joins the
                        # build's lease (kiln.store.leases)
                        task = contextvars.copy_context().run
                        running[pool.submit(task, self._build_stage, index)] = index
                    if not running:
                        raise InvalidArgument("the stage graph cannot be scheduled (a cycle?)")
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        running.pop(fut)
                        fut.result()
            except BaseException:
                self.cancel.set()
                wait(running)
                raise

    def _build_stage(self, index: int) -> str:
        stage = self.plan.stages[index]
        run = StageRun(
            self, stage, is_target=index == self.plan.target_index,
            args=self.build_args.stage(), lex=self.lex, no_cache=index in self.no_cache_stages,
        )  # fmt: skip
        total = 1 + len(stage.instructions)
        self.check_cancel()
        run.begin_step(1, total, self._from_text(stage), stage.line)
        try:
            triggers = dispatch_from(run, self)
            for instr in triggers:
                self._dispatch(run, instr)
            run.end_step()
            for n, instr in enumerate(stage.instructions, start=2):
                self.check_cancel()
                run.begin_step(n, total, instr.original, instr.line)
                self._dispatch(run, instr)
                run.end_step()
            self.check_cancel()
            image_id = run.finish(self.opts.tags if run.is_target else [])
        except BaseException as exc:  # Ctrl-C cancels the build as the cancel event does
            try:
                run.end_step(
                    "cancelled" if isinstance(exc, Cancelled | KeyboardInterrupt) else "failed"
                )
            finally:  # a second Ctrl-C during end_step too: the stage's mounts go
                run.release()
            raise
        run.release()
        self.progress.stage_end(run.pos, image_id, run.started)
        with self._lock:
            self.results[index] = image_id
        return image_id

    def _from_text(self, stage: Stage) -> str:
        """The FROM step as buildah prints it: the expanded base (a stage's image ID when the
        base is an earlier stage), then `` AS name``; flags such as --platform are left out."""
        base = stage.base_expanded
        if stage.base_stage is not None:
            with self._lock:
                base = self.results.get(stage.base_stage, base).removeprefix("sha256:")
        return f"FROM {base}" + (f" AS {stage.name}" if stage.name else "")

    def _dispatch(self, run: StageRun, instr: Instruction) -> None:
        if isinstance(instr, Run):
            dispatch_run(run, self, instr)
        elif isinstance(instr, Copy | Add):
            # start-up: the COPY/ADD code (context copies, git, URLs, tar detection)
            from kiln.build.dispatch_copy import dispatch_copy

            dispatch_copy(run, self, instr)
        else:
            dispatch_meta(run, instr)

    def _finish(self, image_id: str) -> BuildResult:
        # read before the names go on: another kiln's rmi of a name does not fail the build
        rec = self.store.get_image(image_id)
        for name in self.names:
            self.store.tag(name, image_id)
            self.progress.tagged(name)
        warning = self.build_args.unused_warning()
        warnings = [warning] if warning else []
        for text in warnings:
            self.progress.warning(text)
        if self.opts.iidfile:
            # start-up: only --iidfile and --output write files
            from kiln.util.output import write_output

            write_output(self.opts.iidfile, image_id.encode())
        if self.opts.outputs:
            # start-up: only --output exports
            from kiln.build.outputs import export_outputs

            export_outputs(
                self.opts.outputs, image_id, open_root=self.open_image_root,
                open_image=self.open_image, names=self.names, timestamp=self.opts.timestamp,
            )  # fmt: skip
        if self.opts.on_built is not None:  # pushes and cache exports (kiln.ops.build_share)
            self.opts.on_built(self, image_id)
        self.progress.image(image_id)
        stage_images = {}
        for index, iid in self.results.items():
            stage = self.plan.stages[index]
            stage_images[stage.name or str(index)] = iid
        return BuildResult(
            image_id=image_id, names=list(self.names), stage_images=stage_images,
            cache_hits=self.cache_hits, steps=self.progress.steps, warnings=warnings,
            manifest_digest=rec.manifest_digest,
        )  # fmt: skip

    # -- BuildServices: what stages and their dispatchers ask of the build -------------------

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("the build was cancelled")

    def new_builder(self, image_id: str | None) -> Builder:
        self.check_cancel()
        # start-up: the working container's code only where a step runs (a cached build none)
        from kiln.container import Builder

        return Builder.from_image(
            self.ctx, image_id, pull_policy="missing", image_format=self.opts.image_format,
            owner=this_process(),  # removed by the next kiln command if this one is killed
            volatile_mounts=True,  # thrown away, or re-derivable from its blobs: no unmount syncs
            owned=self._own,  # the build's to remove from its making on: a Ctrl-C has no gap
        )  # fmt: skip

    def _own(self, b: Builder) -> None:
        with self._lock:
            self._builders.add(b)

    def release_builder(self, b: Builder) -> None:
        # deleted before it is forgotten: a Ctrl-C between leaves it to ``_remove_builders``
        with contextlib.suppress(Exception):
            b.delete()
        with self._lock:
            self._builders.discard(b)

    def record_cache(self, stage: int, key: str, image_id: str, *, hit: bool) -> None:
        with self._lock:
            self.cache_log.append((stage, key, image_id))
            if hit:
                self.cache_hits += 1

    def open_image(self, image_id: str) -> StoreImage:
        return open_store_image(self.store, image_id)

    def _remove_builders(self) -> None:
        with self._lock:
            builders, self._builders = list(self._builders), set()
        for b in builders:
            with contextlib.suppress(Exception):
                b.delete()

    def stage_platform(self, stage: Stage) -> str:
        """The platform a stage is built for: its ``FROM --platform``, else the build's."""
        return str(Platform.parse(stage.platform)) if stage.platform else self.platform

    def scratch_config(self, platform: str | None = None) -> ImageConfig:
        """The config of ``FROM scratch``: the platform and, as buildah gives it, a PATH."""
        if platform is None and self.opts.platform:
            platform = self.platform
        plat = Platform.parse(platform) if platform else Platform.host()
        config = ImageConfig(architecture=plat.architecture, os=plat.os or "linux",
                             variant=plat.variant)  # fmt: skip
        return config.evolve(config=config.config.with_env("PATH", DEFAULT_PATH))

    def stage_image(self, index: int) -> str:
        with self._lock:
            if index not in self.results:
                raise InvalidArgument(f"stage {index} is needed before it was built")
            return self.results[index]

    def resolve_image(self, ref: str, platform: str | None = None) -> str:
        """An image for FROM / --from, following the pull policy. When a platform is asked
        for (``FROM --platform``, else ``--platform``), a local image of another platform
        counts as missing, as buildah has it."""
        policy = PullPolicy.parse(self.opts.pull)
        want = platform or self.opts.platform
        if names_file_transport(ref):  # FROM oci-archive:/x.tar: read it each time, as buildah
            if self.opts.puller is None:
                raise InvalidArgument(f"FROM {ref}: image files are read only by kiln build")
            return self.opts.puller(ref, "always")
        other = ""  # why a local image or list does not do
        try:  # a list's name gives its image for the platform (the host's by default)
            rec = self.store.resolve_image(ref, want)
            local: str | None = rec.id
            if want and rec.platform and not _platform_matches(want, rec.platform):
                local, other = None, f"the local one is {rec.platform}"
        except NotFound as exc:
            local = None
            if "image not known" not in str(exc):  # a list without the platform's image
                other = str(exc)
        puller = self.opts.puller
        if puller is None or not policy.asks_registry(have_local=local is not None):
            if local is None:
                note = f" for {want or Platform.host()} ({other})" if other else ""
                raise NotFound(f"creating build container: {ref}: image not known{note}")
            return local
        try:
            return puller(ref, policy, want) if want else puller(ref, policy)
        except KilnError as exc:
            if not other or isinstance(exc, Cancelled):
                raise
            # the local list or image is what the user meant: say why it did not do first
            raise NotFound(
                f"creating build container: {ref}: image not known for {want or Platform.host()}"
                f" ({other}); pulling it failed too: {exc}"
            ) from None

    def base_image(self, ref: str, platform: str | None = None) -> str:
        """The image ``FROM ref`` names: a named context's image, or ``ref`` itself."""
        named = self.named.get(ref)
        if named is None:
            return self.resolve_image(ref, platform)
        if named.image is None:
            raise InvalidArgument(
                f"FROM {ref}: the build context {ref} is a directory; FROM needs an image "
                f"(--build-context {ref}=container-image://IMAGE)"
            )
        return self._named_image(named.image, platform)

    def _named_image(self, image: str, platform: str | None = None) -> str:
        with self._lock:
            if image in self._refs:
                return self._refs[image]
        image_id = self.resolve_image(image, platform)
        with self._lock:
            self._refs[image] = image_id
        return image_id

    def named_dir(self, ref: str | None) -> BuildContext | None:
        """The directory a ``--build-context`` of this name is, if it is one."""
        return self.named_dirs.get(ref) if ref is not None else None

    def ref_image(self, ref: str) -> str:
        """The image a ``--from``/``from=`` names: a named context, a stage (name or index)
        or an image. A named directory gives its content digest (for cache keys)."""
        named = self.named.get(ref)
        if named is not None:
            if named.image is not None:
                return self._named_image(named.image)
            return self.named_dirs[ref].digest([""])
        names = {s.name: s.index for s in self.plan.stages if s.name}
        index = int(ref) if ref.isdigit() else names.get(ref.lower())
        if index is not None:
            if index >= len(self.plan.stages):
                raise InvalidArgument(f"invalid from flag value {ref}: index out of bounds")
            return self.stage_image(index)
        with self._lock:
            if ref in self._refs:
                return self._refs[ref]
        image_id = self.resolve_image(ref)
        with self._lock:
            self._refs[ref] = image_id
        return image_id

    def open_ref_root(self, ref: str) -> contextlib.AbstractContextManager[str]:
        """The root filesystem of a stage or image, mounted read-only for the duration, or
        a named context's directory."""
        named = self.named_dirs.get(ref)
        if named is not None:
            return contextlib.nullcontext(named.root)
        return self.open_image_root(self.ref_image(ref))

    @property
    def snapshot_driver(self) -> str:
        return str(self.ctx.snapshots.driver)

    @contextlib.contextmanager
    def open_image_root(self, image_id: str | None) -> Iterator[str]:
        snaps = self.ctx.snapshots
        top = None
        if image_id is not None:
            top = unpack_image(self.store, snaps, open_store_image(self.store, image_id))
        if top is None:
            import tempfile  # start-up: only a mount of scratch needs it

            with tempfile.TemporaryDirectory(prefix="kiln-empty-", dir=self.tmpdir) as empty:
                yield empty
            return
        key = f"kiln-build-view-{os.urandom(8).hex()}"
        try:  # the view made inside: a Ctrl-C just after ``view`` returned must remove it too
            spec = snaps.view(key, top)
            with mounted(spec, parent_dir=self.tmpdir) as path:
                yield path
        finally:  # to its end: a Ctrl-C as the view is unmounted waits for its removal
            finish_held(lambda: snaps.discard(key))

    def _parse_volumes(self) -> list[Mount]:
        if not self.opts.volumes:
            return []
        from kiln.runtime import parse_volume  # start-up: only for --volume

        return [parse_volume(v) for v in self.opts.volumes]

    def run_mounts(
        self, specs: tuple[RunMount, ...], from_ids: Mapping[str, str]
    ) -> contextlib.AbstractContextManager[MountSet]:
        return prepared_mounts(
            specs, context_dir=self.context.root, store=self.store, secrets=self.secrets,
            open_root=self.open_ref_root, tmpdir=self.tmpdir, ssh_sockets=self.ssh_sockets,
            from_ids=from_ids,
        )  # fmt: skip

    def run_process(
        self, b: Builder, argv: list[str], env: dict[str, str], mounts: list[Mount],
        network: str, pos: int, security: str = "sandbox",
    ) -> int:  # fmt: skip
        """Run ``argv`` in ``b``; its output goes to the progress as it comes."""
        self.check_cancel()
        from kiln.runtime import RunOptions  # start-up: as in new_builder

        o = self.opts
        values: dict[str, Any] = {}
        if network != "default":  # RUN --network=...
            values["network"] = network
        if security == "insecure":  # granted by --allow security.insecure (dispatch_run)
            values.update(cap_add=("ALL",), cap_drop=(), seccomp="unconfined")
        ours: list[int] = []  # the pipe's write end and /dev/null, closed in the finally
        reader = None
        try:
            # held: a Ctrl-C between the pipe and the reader that owns its read end would
            # leave descriptors nobody closes in a long-lived process
            with signals_held():
                read_fd, write_fd = os.pipe()
                ours.append(write_fd)
                try:
                    reader = self.pumps.submit(self._pump, read_fd, pos)  # its read end's owner
                except BaseException:
                    os.close(read_fd)
                    raise
                null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                ours.append(null_fd)
            opts = RunOptions.of(
                o.run, args=list(argv), env=[f"{k}={v}" for k, v in env.items()],
                mounts=[*self.volumes, *mounts], stdin=null_fd, stdout=write_fd,
                stderr=write_fd, cancel=self.cancel, while_running=_load_commit_code,
                **values,
            )  # fmt: skip
            code = b.run(argv, opts)
        finally:
            finish_held(lambda: _close_all(ours))
            if reader is not None:
                reader.wait(timeout=30)
        self.check_cancel()  # a cancelled RUN was stopped: its exit code means nothing
        return code

    def _pump(self, fd: int, pos: int) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            while chunk := os.read(fd, 65536):
                text = decoder.decode(chunk)
                if text:
                    self.progress.output(text, pos)
            tail = decoder.decode(b"", final=True)
            if tail:
                self.progress.output(tail, pos)
        finally:
            os.close(fd)


def _close_all(fds: list[int]) -> None:
    """Close and forget each of ``fds`` (again after an interruption: what is left)."""
    while fds:
        os.close(fds.pop())


class BuildCancel(LinkedFlag):
    """The build's own cancel flag, linked to the caller's (``opts.cancel``).

    It reads as set when either is: the caller cancelling (a client that went away,
    Ctrl-C) stops every stage. A failing stage sets only this one, to stop its siblings:
    the caller's flag is the caller's to set (the API server reads it as "the client
    went away" and would stop answering), so a failure never sets it and always
    reaches the caller as the build's error. The build runs under it
    (``kiln.util.cancel``): a stage's FROM pull stalled mid-blob ends with it too.
    """


def _ssh_sources(specs: list[str]) -> dict[str, SshSource]:
    if not specs:
        return {}
    # start-up: the ssh agent code only for --ssh
    from kiln.runtime.ssh_agent import parse_ssh_specs

    return parse_ssh_specs(specs)


@contextlib.contextmanager
def _ssh_agents(sources: dict[str, SshSource], tmpdir: str | None) -> Iterator[dict[str, str]]:
    """The build's ssh agents (id -> socket), stopped when it ends; none without --ssh."""
    if not sources:
        yield {}
        return
    # start-up: the ssh agent code only for --ssh
    from kiln.runtime.ssh_agent import SshAgents

    with SshAgents(sources, tmpdir) as agents:
        yield agents.sockets


def _platform_matches(want: str, have: str) -> bool:
    return Platform.parse(want).matches(Platform.parse(have))


def _load_commit_code() -> None:
    """While a RUN's container starts (runc's tens of ms, kiln idle): import the code the
    step's commit runs next (the upper dir's scan, the tar writer, the layer pipeline: ~15 M
    instructions), so the commit does not wait for it after the RUN."""
    # start-up: loaded here, overlapping runc, rather than when the commit first needs it
    import kiln.container.commit  # noqa: F401
