"""The build use case: ``build(ctx, BuildOptions) -> BuildResult``.

It opens the context and reads the Containerfile (``kiln.ops.build_inputs``), reads the
ignore file, runs the build checks (``kiln.ops.build_checks``), wires pulls to the
registry use cases (``kiln.ops.build_pulls``), imports and exports caches and pushes
(``kiln.ops.build_share``), fans out over platforms (``kiln.ops.build_platforms``) and runs
``kiln.build.executor.Executor``. Progress goes to ``ctx.events`` (see
``kiln.build.progress`` for the event types); nothing is printed. Cancel with
``opts.cancel`` (a ``threading.Event``): checked between steps, and a running RUN is
stopped (SIGTERM, then SIGKILL); the build raises ``kiln.errors.Cancelled``.
"""

from __future__ import annotations

import contextlib
import importlib
import sqlite3
from typing import TYPE_CHECKING

from kiln.build.context import BuildContext
from kiln.build.dockerignore import load_ignore_file
from kiln.build.executor import Executor
from kiln.build.options import ENTITLEMENTS, BuildOptions, BuildResult
from kiln.build.parser import parse_string
from kiln.build.progress import Progress
from kiln.build.record import BuildRecorder
from kiln.errors import InvalidArgument, KilnError
from kiln.ops import build_share
from kiln.ops.build_checks import check, run_build_checks
from kiln.ops.build_inputs import containerfile, context_dir, find_dockerfile, read_containerfile
from kiln.ops.build_platforms import build_platforms, target_platforms
from kiln.ops.build_pulls import puller
from kiln.ops.context import Context, sweep_leftovers
from kiln.ops.events import Event
from kiln.ops.image_events import record

if TYPE_CHECKING:
    from kiln.build.named_contexts import NamedContext

__all__ = [
    "BuildOptions",
    "BuildResult",
    "build",
    "check",
    "find_dockerfile",
    "preload",
    "read_containerfile",
    "writes_stdout",
]


def build(ctx: Context, opts: BuildOptions) -> BuildResult:
    """Build the image ``opts`` describe; see the module docstring."""
    for entitlement in opts.allow:
        if entitlement not in ENTITLEMENTS:
            raise InvalidArgument(
                f"--allow {entitlement!r}: unknown entitlement; use {' or '.join(ENTITLEMENTS)}"
            )
    _check_outputs(opts)  # refuse a bad --iidfile or --output before building
    if opts.timestamp is None and opts.build_args.get("SOURCE_DATE_EPOCH", "").isdigit():
        opts.timestamp = int(opts.build_args["SOURCE_DATE_EPOCH"])
    if opts.timestamp is None and opts.source_date_epoch is not None:
        opts.timestamp = opts.source_date_epoch
    sweep_leftovers(ctx)  # what a killed build left: its RUN, mounts, scratch, lease
    ctx.snapshots.probe_ahead()  # a fresh store: overlay probed while the build gets going
    if opts.tmpdir is None or opts.tmpdir == ctx.config.scratch_dir():
        opts.tmpdir = ctx.tmpdir  # this build's own scratch dir, swept if it is killed
    with (
        context_dir(ctx, opts) as root,
        _named_contexts(opts) as named,
        contextlib.ExitStack() as named_dirs,
    ):
        paths, text, name = containerfile(root, opts)
        parsed = parse_string(text, name=name)
        platforms = target_platforms(ctx, opts, parsed)  # None: one build, as ever
        if platforms is not None or opts.platform or "--platform" in text:
            # start-up: only a build that names a platform may need an emulator; one without
            # an emulator for a foreign RUN fails now, not after the steps before that RUN
            from kiln.build.emulators import check_emulators

            check_emulators(parsed, opts.build_args, opts.target, platforms or [opts.platform],
                            dockerfile=name, named=named.keys())  # fmt: skip
        patterns = load_ignore_file(root, paths[0] if paths else None)
        report = run_build_checks(ctx, opts, parsed, patterns) if opts.checks else None
        recorder = BuildRecorder(opts, text, name)  # the build's record (build history)
        progress = Progress(
            recorder.wrap(lambda kind, msg, data: ctx.events.emit(Event(kind, msg, data)))
        )
        # the lease keeps every step image alive until the build ends (GC, image prune)
        with (
            BuildContext(root, patterns, checksums=ctx.store, tmpdir=opts.tmpdir) as context,
            ctx.store.lease(),
            build_share.caches_imported(ctx, opts, progress),
        ):
            dirs = {
                n: named_dirs.enter_context(
                    BuildContext(c.directory, [], checksums=ctx.store, tmpdir=opts.tmpdir)
                )
                for n, c in named.items()
                if c.directory is not None
            }

            built: list[Executor] = []  # each platform's, for the one cache export

            def run(opts: BuildOptions, progress: Progress) -> BuildResult:
                executor = Executor(ctx, opts, parsed, context, progress, dockerfile_name=name,
                                    named=named, named_dirs=dirs)  # fmt: skip
                built.append(executor)
                given = opts.puller  # the caller's, else one bound to this build
                if given is None:
                    opts.puller = puller(ctx, opts, executor.cancel)
                opts.on_built = lambda ex, image_id: build_share.finish(
                    ctx, opts, ex, image_id, export=platforms is None
                )
                try:
                    return executor.run()
                finally:
                    opts.puller = given
                    opts.on_built = None

            try:
                if platforms is not None:
                    result = build_platforms(ctx, opts, platforms, run)
                    build_share.export_caches(ctx, opts, built, progress)
                else:
                    result = run(opts, progress)
            except BaseException as exc:
                recorder.finish(ctx.store, error=exc)
                raise
            for finding in report.warnings if report is not None else ():
                progress.check(finding.rule, finding.message, finding.line)
            _record(ctx, recorder, result)
            return result


def writes_stdout(outputs: list[str]) -> bool:
    """Whether an ``--output`` of ``outputs`` writes to standard output (progress must go
    elsewhere): :func:`kiln.build.outputs.writes_stdout`."""
    if not outputs:
        return False
    # start-up: only --output exports
    from kiln.build.outputs import writes_stdout as to_stdout

    return to_stdout(outputs)


def _check_outputs(opts: BuildOptions) -> None:
    if opts.iidfile:
        # start-up: only --iidfile and --output write files
        from kiln.util.output import check_output

        check_output(opts.iidfile)
    if opts.outputs:
        # start-up: only --output exports
        from kiln.build.outputs import check_outputs

        check_outputs(opts.outputs)


def _named_contexts(
    opts: BuildOptions,
) -> contextlib.AbstractContextManager[dict[str, NamedContext]]:
    """The ``--build-context`` contexts ready to read (none for most builds)."""
    if not opts.build_contexts:
        return contextlib.nullcontext({})
    # start-up: named contexts are rare
    from kiln.build.named_contexts import open_named_contexts

    return open_named_contexts(opts.build_contexts, opts.tmpdir)


def _record(ctx: Context, recorder: BuildRecorder, result: BuildResult) -> None:
    """The build's record (build history) and its ``build`` event, written in one
    transaction: a fully cached build writes nothing else. Neither ever fails the build."""
    with contextlib.suppress(KilnError, sqlite3.Error, OSError):
        with ctx.store.transaction():
            record_id = recorder.finish(ctx.store, manifest_digest=result.manifest_digest)
            record(ctx, "build", result.image_id, result.names[0] if result.names else "")
        result.record_id = record_id  # committed


def preload() -> None:
    """Import what a build loads on its way (a COPY, a layer's commit) besides this module:
    a long-lived process (``kiln serve``) calls it once, off its request path, so that its
    first build costs what a later one does. A short command never needs it."""
    for name in _LOADED_ON_THE_WAY:
        importlib.import_module(name)


# start-up: each is imported where a build uses it, as a short command that does not build
# (or builds no COPY, heredoc, --mount, working container...) need not pay for it
_LOADED_ON_THE_WAY = (
    "kiln.archive.tar_writer", "kiln.build.context_ahead", "kiln.build.copy_direct",
    "kiln.build.dispatch_copy", "kiln.build.heredoc", "kiln.build.mounts", "kiln.build.staging",
    "kiln.container.builder", "kiln.container.commit", "kiln.runtime.binfmt",
)  # fmt: skip
