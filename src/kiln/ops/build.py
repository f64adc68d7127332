"""The build use case: ``build(ctx, BuildOptions) -> BuildResult``.

It finds the Dockerfile (``Containerfile``, then ``Dockerfile``; or the text given), opens
the context (a directory, ``-`` for a tar on stdin, or an http(s) URL of a tar), reads
the ignore file, wires pulls to the registry use cases when this kiln has them, and runs
``kiln.build.executor.Executor``. Progress goes to ``ctx.events`` (see
``kiln.build.progress`` for the event types); nothing is printed. Cancel with
``opts.cancel`` (a ``threading.Event``): checked between steps, and a running RUN is
stopped (SIGTERM, then SIGKILL); the build raises ``kiln.errors.Cancelled``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from kiln.build.options import ENTITLEMENTS, BuildOptions, BuildResult
from kiln.build.outputs import check_outputs, writes_stdout
from kiln.errors import Cancelled, InvalidArgument, KilnError, NotFound
from kiln.image.transport_names import names_file_transport
from kiln.ops.context import Context, sweep_leftovers
from kiln.ops.events import Event, EventSink
from kiln.util.output import check_output

if TYPE_CHECKING:
    from kiln.build.checks import CheckReport

__all__ = ["BuildOptions", "BuildResult", "build", "check", "find_dockerfile", "writes_stdout"]

DEFAULT_FILES = ("Containerfile", "Dockerfile")


def find_dockerfile(context_dir: str, given: list[str]) -> list[str]:
    """The Dockerfile paths: as given (relative to the cwd, else to the context), or the
    context's ``Containerfile``, else its ``Dockerfile``."""
    if given:
        found = []
        for path in given:
            if os.path.isfile(path):
                found.append(os.path.abspath(path))
            elif not os.path.isabs(path) and os.path.isfile(os.path.join(context_dir, path)):
                found.append(os.path.join(context_dir, path))
            else:
                raise NotFound(f"the Containerfile {path} does not exist: check -f")
        return found
    for name in DEFAULT_FILES:
        path = os.path.join(context_dir, name)
        if os.path.isfile(path):
            return [path]
    raise NotFound(
        f"no Containerfile or Dockerfile found in the context directory {context_dir}: "
        "add one or pass -f"
    )


@contextlib.contextmanager
def _context_dir(ctx: Context, opts: BuildOptions) -> Iterator[str]:
    from kiln.build.remote_context import is_remote_context, open_remote_context

    if is_remote_context(opts.context):
        keep_git = opts.build_args.get("BUILDKIT_CONTEXT_KEEP_GIT_DIR", "") not in ("", "0")
        with open_remote_context(
            opts.context, opts.tmpdir or ctx.tmpdir, stdin=opts.context_stream,
            keep_git_dir=keep_git,
        ) as root:  # fmt: skip
            yield root
        return
    if not os.path.isdir(opts.context):
        raise NotFound(f"the build context {opts.context} is not a directory: check the path")
    yield os.path.abspath(opts.context)


class _StoppingSink:
    """A pull's events inside a build: once the build is stopping (a stage failed, the
    caller cancelled), the pull's next event raises ``Cancelled``, so a stage waiting on
    a long pull stops with its siblings instead of holding the build's error back."""

    def __init__(self, sink: EventSink, stopping: threading.Event) -> None:
        self._sink, self._stopping = sink, stopping

    def emit(self, event: Event) -> None:
        if self._stopping.is_set():
            raise Cancelled("the build was cancelled")
        self._sink.emit(event)


def _puller(ctx: Context, opts: BuildOptions, stopping: threading.Event) -> Any:
    """``(ref, policy) -> image id`` for FROM and ``--from`` images, through the registry
    (with the build's --tls-verify, --cert-dir, --authfile and --creds, as podman's).
    The registry code is imported on the first pull: a build from local images needs none."""
    pull_ctx = dataclasses.replace(ctx, events=_StoppingSink(ctx.events, stopping))
    kw: dict[str, Any] = {}
    for key in ("tls_verify", "cert_dir", "authfile", "creds"):
        if getattr(opts, key) is not None:
            kw[key] = getattr(opts, key)
    if opts.registry_auth:  # an API client's credentials, for this build only
        kw["auths"] = opts.registry_auth

    def pull(ref: str, policy: str, wanted: str | None = None) -> str:
        if names_file_transport(ref):  # FROM oci-archive:/x.tar and the like, as buildah
            from kiln.ops import transfer, transports

            return transfer.pull_image(pull_ctx, transports.parse_transport(ref)).image_id
        # asked with a platform, the executor found no local image of it: a local one of
        # another platform must not satisfy "missing"
        from kiln.ops.registry import ensure_image

        if wanted and policy == "missing":
            policy = "always"
        plat = wanted or opts.platform
        args = dict(kw, platform=plat) if plat else kw
        return str(ensure_image(pull_ctx, ref, pull_policy=policy, **args))

    return pull


def build(ctx: Context, opts: BuildOptions) -> BuildResult:
    """Build the image ``opts`` describe; see the module docstring."""
    from kiln.build.context import BuildContext
    from kiln.build.dockerignore import load_ignore_file
    from kiln.build.executor import Executor
    from kiln.build.named_contexts import open_named_contexts
    from kiln.build.parser import parse_string
    from kiln.build.progress import Progress
    from kiln.build.record import BuildRecorder
    from kiln.ops import build_share
    from kiln.ops.build_platforms import build_platforms, target_platforms

    for entitlement in opts.allow:
        if entitlement not in ENTITLEMENTS:
            raise InvalidArgument(
                f"--allow {entitlement!r}: unknown entitlement; use {' or '.join(ENTITLEMENTS)}"
            )
    if opts.image_format not in ("oci", "docker"):
        raise InvalidArgument(f"--format {opts.image_format!r} is invalid: use oci or docker")
    if opts.iidfile:
        check_output(opts.iidfile)  # refuse a bad --iidfile or --output before building
    check_outputs(opts.outputs)
    if opts.timestamp is None and opts.build_args.get("SOURCE_DATE_EPOCH", "").isdigit():
        opts.timestamp = int(opts.build_args["SOURCE_DATE_EPOCH"])
    if opts.timestamp is None and opts.source_date_epoch is not None:
        opts.timestamp = opts.source_date_epoch
    sweep_leftovers(ctx)  # what a killed build left: its RUN, mounts, scratch, lease
    if opts.tmpdir is None or opts.tmpdir == ctx.config.scratch_dir():
        opts.tmpdir = ctx.tmpdir  # this build's own scratch dir, swept if it is killed
    with (
        _context_dir(ctx, opts) as root,
        open_named_contexts(opts.build_contexts, opts.tmpdir) as named,
        contextlib.ExitStack() as named_dirs,
    ):
        if opts.dockerfile_text is not None:
            paths: list[str] = []
            text, name = opts.dockerfile_text, "Containerfile"
        elif opts.dockerfile_in_context:
            paths, text = _read_in_context(root, opts.dockerfiles)
            name = os.path.basename(paths[0])
        else:
            paths = find_dockerfile(root, opts.dockerfiles)
            text, name = _read(paths), os.path.basename(paths[0])
        parsed = parse_string(text, name=name)
        platforms = target_platforms(ctx, opts, parsed)  # None: one build, as ever
        patterns = load_ignore_file(root, paths[0] if paths else None)
        report = _check(ctx, opts, parsed, patterns) if opts.checks else None
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

            def run(opts: BuildOptions, progress: Progress) -> BuildResult:
                executor = Executor(ctx, opts, parsed, context, progress, dockerfile_name=name,
                                    named=named, named_dirs=dirs)  # fmt: skip
                given = opts.puller  # the caller's, else one bound to this build
                if given is None:
                    opts.puller = _puller(ctx, opts, executor.cancel)
                opts.on_built = lambda ex, image_id: build_share.finish(ctx, opts, ex, image_id)
                try:
                    return executor.run()
                finally:
                    opts.puller = given
                    opts.on_built = None

            try:
                if platforms is not None:
                    result = build_platforms(ctx, opts, platforms, run)
                else:
                    result = run(opts, progress)
            except BaseException as exc:
                recorder.finish(ctx.store, error=exc)
                raise
            for finding in report.warnings if report is not None else ():
                progress.check(finding.rule, finding.message, finding.line)
            result.record_id = recorder.finish(ctx.store, manifest_digest=result.manifest_digest)
            from kiln.ops.image_events import record

            record(ctx, "build", result.image_id, result.names[0] if result.names else "")
            return result


def check(ctx: Context, opts: BuildOptions) -> CheckReport:
    """``kiln build --check``: the build checks' findings, building nothing."""
    from kiln.build.dockerignore import load_ignore_file
    from kiln.build.parser import parse_string

    with _context_dir(ctx, opts) as root:
        if opts.dockerfile_text is not None:
            paths: list[str] = []
            text, name = opts.dockerfile_text, "Containerfile"
        else:
            paths = find_dockerfile(root, opts.dockerfiles)
            text, name = _read(paths), os.path.basename(paths[0])
        parsed = parse_string(text, name=name)
        return _check(ctx, opts, parsed, load_ignore_file(root, paths[0] if paths else None),
                      fail=False)  # fmt: skip


def _check(ctx: Context, opts: BuildOptions, parsed: Any, patterns: list[str],
           fail: bool = True) -> CheckReport:  # fmt: skip
    """Run the checks; with ``# check=error=true`` a finding fails the build (``fail``)."""
    from kiln.build.checks import CheckReport, run_checks

    def base_env(name: str) -> list[str] | None:
        from kiln.image import open_store_image

        try:
            env = open_store_image(ctx.store, name).config.config.env
        except (NotFound, InvalidArgument):
            return None
        return [item.partition("=")[0] for item in env]

    try:
        report = run_checks(parsed, build_args=opts.build_args, ignore_patterns=patterns,
                            base_env=base_env)  # fmt: skip
    except KilnError:
        raise  # a bad # check= directive: the user's to fix
    except Exception:  # a lint bug never stops a build
        logging.getLogger(__name__).warning("the build checks failed", exc_info=True)
        return CheckReport()
    if fail and report.error:
        listed = "; ".join(str(w) for w in report.warnings)
        raise InvalidArgument(
            f"the build checks failed (# check=error=true): {listed}; fix them or skip the "
            "rules with # check=skip=RULE"
        )
    return report


def read_containerfile(stream: TextIO, name: str) -> str:
    """A Containerfile given on a stream (``-f -``), within the parser's size cap."""
    from kiln.build.parser import read_capped

    return read_capped(stream, name)


def _read_in_context(root: str, given: list[str]) -> tuple[list[str], str]:
    """The API's Dockerfiles: (paths inside ``root``, their text), each read in-root."""
    from kiln.build.context import read_in_context
    from kiln.build.parser import MAX_DOCKERFILE_BYTES as LIMIT

    if not given:
        for default in DEFAULT_FILES:
            try:
                return [os.path.join(root, default)], read_in_context(root, default, limit=LIMIT)
            except NotFound:
                continue
        raise InvalidArgument(
            "no Containerfile or Dockerfile found in the build context: add one or pass dockerfile"
        )
    texts = []
    for rel in given:
        try:
            texts.append(read_in_context(root, rel, limit=LIMIT))
        except NotFound as exc:
            raise InvalidArgument(str(exc)) from None  # a bad request parameter: 400
    norms = [os.path.normpath(rel) for rel in given]
    return [os.path.join(root, rel) for rel in norms], "\n".join(texts)


def _read(paths: list[str]) -> str:
    from kiln.build.parser import read_dockerfile

    return "\n".join(read_dockerfile(path) for path in paths)
