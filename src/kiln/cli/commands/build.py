"""kiln build (alias kiln bud): build an image from a Containerfile or Dockerfile.

Output follows ``podman build``: ``STEP n/N: ...`` lines, RUN output as it comes,
``--> Using cache <id>`` / ``--> <id>``, ``COMMIT <name>``, ``Successfully tagged ...``
and the full image ID last, all on stdout (``--quiet``: the ID only; ``--progress json``:
one JSON event per line, a failure last as ``{"kind": "error", ...}`` besides the
``Error:`` line on stderr). A failing RUN exits with its exit code, other errors with 125.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import click

from kiln.cli.commands._commit_flags import compression_option, iidfile_option
from kiln.cli.commands._registry_flags import registry_flags
from kiln.cli.commands._run_flags import run_flag, run_settings, volume_flag
from kiln.cli.go_flags import OptionalValue
from kiln.cli.state import State, pass_state
from kiln.errors import InvalidArgument, KilnError, ProcessFailed
from kiln.util.choices import PULL_POLICIES, Compression, ImageFormat, PullPolicy

if TYPE_CHECKING:
    from kiln.ops.build import BuildOptions

EXIT_ERROR = 125  # what kiln exits with for its own errors, as podman
PULL_CHOICES = (*PULL_POLICIES, "true", "false")


class BuildRenderer:
    """Build events as podman prints them (plain lines, or JSON lines)."""

    def __init__(self, mode: str, quiet: bool, out: IO[str] | None = None,
                 err: IO[str] | None = None, explain: bool = False) -> None:  # fmt: skip
        self.mode = mode
        self.quiet = quiet
        self.explain = explain
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._lock = threading.Lock()
        self._plain: Any = None  # kiln.cli.render.PlainProgress, at the first transfer

    def emit(self, event: Any) -> None:
        with self._lock:
            if self.mode == "json":
                if self.quiet and event.data.get("type") != "image":
                    return
                self.out.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
                self.out.flush()
                return
            kind = event.kind
            if not event.message and kind == "step":
                # facts for live views and JSON (timings, cache); --explain prints the misses
                if self.explain and event.data.get("type") == "cache-miss" and not self.quiet:
                    self.out.write(_explain_line(event.data))
                    self.out.flush()
                return
            if kind == "progress":  # a base pulled, a push: throttled, on stderr as buildah
                if not self.quiet:
                    self._progress_line(event)
                return
            if kind == "warning":
                prefix = "WARNING: " if event.data.get("type") == "check" else ""
                self.err.write(prefix + event.message.rstrip("\n") + "\n")
                self.err.flush()
                return
            if self.quiet and event.data.get("type") != "image":
                return
            if kind == "output":
                self.out.write(event.message)
            else:
                self.out.write(event.message.rstrip("\n") + "\n")
            self.out.flush()

    def _progress_line(self, event: Any) -> None:
        if self._plain is None:
            from kiln.cli.render import PlainProgress  # start-up: see _renderer

            self._plain = PlainProgress()
        line = self._plain.line(event)
        if line is not None:
            self.err.write(line)
            self.err.flush()

    def error(self, message: str, exit_code: int) -> None:
        """With ``--progress json``, the error that ends the build as one more event on
        stdout (stderr still gets the ``Error:`` line)."""
        if self.mode != "json":
            return
        event = {"kind": "error", "message": message,
                 "data": {"type": "error", "exit_code": exit_code}}  # fmt: skip
        with self._lock:
            self.out.write(json.dumps(event, ensure_ascii=False) + "\n")
            self.out.flush()

    def close(self) -> None:
        return None


def _renderer(mode: str, quiet: bool, out: IO[str] | None, explain: bool) -> Any:
    """The live view on a terminal (stderr), else plain or JSON lines."""
    from kiln.cli.render import resolve_mode  # start-up: kiln --help imports every verb

    if mode == "quiet":
        mode, quiet = "plain", True
    mode = resolve_mode(mode, sys.stderr)
    if mode == "tty" and not quiet:
        from kiln.cli.build_view import BuildView  # start-up: rich, on a terminal only

        return BuildView(out=out, explain=explain)
    return BuildRenderer("json" if mode == "json" else "plain", quiet, out=out, explain=explain)


def _run_checks(state: State, opts: Any, renderer: Any) -> None:
    """``--check``: the findings, one per line; exit 1 when ``# check=error=true`` and any."""
    from kiln.ops.build import check  # start-up: kiln --help imports every verb

    with _json_error(renderer), state.context(events=BuildRenderer("plain", True)) as ctx:
        report = check(ctx, opts)
    found = report.warnings
    if getattr(renderer, "mode", "") == "json":
        for w in found:
            renderer.out.write(json.dumps({"kind": "warning", "message": str(w), "data": {
                "type": "check", "rule": w.rule, "line": w.line}}) + "\n")  # fmt: skip
    else:
        out = sys.stdout
        if found:
            noun = "warning has" if len(found) == 1 else "warnings have"
            out.write(f"Check complete, {len(found)} {noun} been found!\n")
            for w in found:
                out.write(f"WARNING: {w}\n")
        else:
            out.write("Check complete, no warnings found.\n")
        out.flush()
    if report.error:
        raise click.exceptions.Exit(1)


def _explain_line(data: dict[str, Any]) -> str:
    """``--> Cache miss: COPY app/ /app: 2 files changed (app/a.py, app/b.py)``."""
    return f"--> Cache miss: {data.get('instruction', '')}: {data.get('reason', '')}\n"


@contextlib.contextmanager
def _json_error(renderer: BuildRenderer) -> Iterator[None]:
    """A kiln error raised inside also becomes the last JSON event (``--progress json``)."""
    try:
        yield
    except KilnError as exc:
        code = (exc.exit_code or 1) if isinstance(exc, ProcessFailed) else EXIT_ERROR
        renderer.error(str(exc), code)
        raise
    except KeyboardInterrupt:  # the stream ends as the Error line does
        renderer.error("interrupted", 130)
        raise


def _pairs(items: tuple[str, ...], flag: str, from_env: bool = False) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"{flag} {item!r} is invalid: use NAME=VALUE")
        if not sep:
            if not from_env:
                raise InvalidArgument(f"{flag} {item!r} is invalid: use NAME=VALUE")
            if key not in os.environ:
                continue
            value = os.environ[key]
        result[key] = value
    return result


def _arg_files(paths: tuple[str, ...]) -> dict[str, str]:
    result: dict[str, str] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise InvalidArgument(f"--build-arg-file {path}: {exc.strerror}") from None
        items = tuple(ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))
        result.update(_pairs(items, "--build-arg-file", from_env=True))
    return result


def _split_commas(values: tuple[str, ...]) -> list[str]:
    return [v for item in values for v in item.split(",") if v]


class BuildCommand(click.Command):
    """``kiln build [OPTIONS] [CONTEXT]``, and ``kiln build history ...`` / ``kiln build report``:
    a first word naming one of those runs it instead (build a directory of that name as
    ``./history``)."""

    SUBCOMMANDS = {"history": "history", "report": "report"}

    def make_context(self, info_name, args, parent=None, **extra):
        if args and args[0] in self.SUBCOMMANDS:
            from kiln.cli.commands import _build_history

            sub = getattr(_build_history, self.SUBCOMMANDS[args[0]])
            return sub.make_context(f"{info_name} {args[0]}", list(args[1:]), parent=parent,
                                    **extra)  # fmt: skip
        return super().make_context(info_name, args, parent=parent, **extra)

    def format_epilog(self, ctx, formatter):
        super().format_epilog(ctx, formatter)
        with formatter.section("Build records"):
            formatter.write_dl([
                ("history ls|inspect|rm|prune", "List, show and remove the records builds leave"),
                ("report [BUILD] -o FILE", "Write one build's report as a self-contained HTML page"),
            ])  # fmt: skip


@click.command(
    "build", cls=BuildCommand, short_help="Build an image using instructions from Containerfiles"
)
@click.argument("context", required=False)
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    metavar="PATH",
    help="Containerfile to use (- reads it from stdin); repeatable",
)
@click.option("-t", "--tag", "tags", multiple=True, metavar="NAME", help="Name the image")
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="ARG=VALUE",
    help="Set a build argument (NAME alone takes it from the environment)",
)
@click.option(
    "--build-arg-file",
    "build_arg_files",
    multiple=True,
    metavar="FILE",
    help="A file of ARG=VALUE lines",
)
@click.option("--target", default=None, help="Build this stage and stop")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Add an image label")
@click.option(
    "--annotation",
    "annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="Add a manifest annotation",
)
@click.option(
    "--format",
    "image_format",
    type=click.Choice(("oci", "docker")),
    default=None,
    help="Image format: oci (default) or docker",
)
@click.option(
    "--pull",
    "pull",
    type=click.Choice(PULL_CHOICES),
    default="missing",
    cls=OptionalValue,
    no_opt_default="always",
    show_default=True,
    help="Pull policy: always, missing, never, newer (--pull alone: always)",
)
@click.option("--pull-always", is_flag=True, hidden=True)
@click.option("--pull-never", is_flag=True, hidden=True)
@click.option("--no-cache", is_flag=True, help="Do not use cached layers (they are refreshed)")
@click.option(
    "--no-cache-filter",
    "no_cache_filter",
    multiple=True,
    metavar="STAGE[,STAGE]",
    help="Do not use cached layers for these stages (their new layers are cached)",
)
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Run the build checks (BuildKit's Dockerfile rules) and build nothing",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Say in one line why each step missed the cache (always in --progress json)",
)
@click.option(
    "--layers",
    type=click.BOOL,
    cls=OptionalValue,
    default=None,
    help="Cache intermediate images per step (default true; $BUILDAH_LAYERS)",
)
@click.option("--squash", is_flag=True, help="Squash the new layers into one")
@click.option("--squash-all", is_flag=True, help="Squash the whole image into one layer")
@iidfile_option
@click.option(
    "--timestamp",
    type=int,
    default=None,
    help="Created time and file mtimes (seconds since the epoch); $SOURCE_DATE_EPOCH",
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH[/VARIANT][,...]",
    help="Target platform(s); several build one image each (join them with --manifest)",
)
@click.option(
    "--all-platforms", is_flag=True, help="Build for every platform the base images offer"
)
@click.option(
    "--manifest", default=None, metavar="NAME", help="Add the image(s) to this manifest list"
)
@run_flag("network", "build")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    help="Grant an entitlement the Containerfile may use: network.host (RUN --network=host), "
    "security.insecure (RUN --security=insecure: all capabilities, no seccomp)",
)
@run_flag("isolation", "build")
@run_flag("runtime", "build")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="id=ID,src=PATH|env=VAR",
    help="A secret RUN --mount=type=secret can use",
)
@click.option(
    "--ssh",
    "ssh",
    multiple=True,
    metavar="default|ID[=SOCKET|KEY[,KEY]]",
    help="An SSH agent RUN --mount=type=ssh can use: default is $SSH_AUTH_SOCK; key files "
    "are held by an agent of kiln's own for the build",
)
@click.option(
    "--build-context",
    "build_contexts",
    multiple=True,
    metavar="NAME=DIR|URL|container-image://IMAGE",
    help="An additional named context for FROM NAME, COPY --from=NAME, RUN --mount=from=NAME",
)
@run_flag("add_hosts", "build")
@run_flag("dns", "build")
@run_flag("dns_search", "build")
@run_flag("dns_options", "build")
@volume_flag("build")
@run_flag("cap_add", "build")
@run_flag("cap_drop", "build")
@run_flag("ulimits", "build")
@run_flag("memory", "build")
@run_flag("memory_swap", "build")
@run_flag("cpu_shares", "build")
@run_flag("cpu_period", "build")
@run_flag("cpu_quota", "build")
@run_flag("cpuset_cpus", "build")
@run_flag("cpuset_mems", "build")
@run_flag("shm_size", "build")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID")
@click.option(
    "--progress",
    type=click.Choice(("auto", "plain", "tty", "json")),
    default=None,
    help="Output: auto, plain, tty or json lines",
)
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    metavar="type=local|tar|oci|docker,dest=PATH | type=image|registry,name=REF",
    help="Also export the image",
)
@compression_option
@click.option(
    "--cache-from",
    "cache_from",
    multiple=True,
    metavar="type=registry,ref=REF | type=local,src=DIR | REF",
    help="Use a build cache another machine exported; repeatable",
)
@click.option(
    "--cache-to",
    "cache_to",
    multiple=True,
    metavar="type=registry,ref=REF[,mode=min|max] | type=local,dest=DIR | type=inline",
    help="Export this build's cache; repeatable",
)
@click.option("--push", is_flag=True, help="Push the image to each -t name after the build")
@registry_flags(scope=" (caches, pushes, pulls)", retry=True)
@click.option("--jobs", type=int, default=None, help="Stages built at once (default 4)")
@click.option("--rm/--no-rm", "rm", default=True, help="Remove intermediate containers")
@click.option(
    "--force-rm/--no-force-rm",
    "force_rm",
    default=True,
    help="Remove intermediate containers even after a failure",
)
@pass_state
def command(state: State, context: str | None, **kw: Any) -> None:
    """Build an image from CONTEXT (a directory, - for a tar on stdin, or a URL of a tar)."""
    # start-up: kiln --help imports every verb, so the build machinery is imported here
    from kiln.ops.build import build, writes_stdout

    # with -o - the tar owns standard output: progress goes to stderr, as with buildah
    out = sys.stderr if writes_stdout(list(kw["outputs"])) else None
    quiet = kw["quiet"] or state.progress == "quiet"
    renderer = _renderer(kw["progress"] or state.progress, quiet, out, kw["explain"])
    with _json_error(renderer):
        opts = _build_options(state, context, kw)
    if kw["check_only"]:
        _run_checks(state, opts, renderer)
        return
    try:
        with _json_error(renderer), state.context(events=renderer) as ctx:
            build(ctx, opts)
    except ProcessFailed as exc:
        sys.stdout.flush()
        sys.stderr.write(f"Error: {exc}\n")
        sys.stderr.flush()
        raise click.exceptions.Exit(exc.exit_code or 1) from None


def _build_contexts(specs: tuple[str, ...]) -> dict[str, str]:
    """``--build-context NAME=VALUE`` values by name."""
    if not specs:
        return {}
    from kiln.build.named_contexts import parse_build_context  # start-up: as in command()

    return dict(parse_build_context(s) for s in specs)


def _build_options(state: State, context: str | None, kw: dict[str, Any]) -> BuildOptions:
    """The ``BuildOptions`` the flags ask for: the RUN flags become ``opts.run``, the
    registry flags ``opts.registry``; $BUILDAH_FORMAT, $BUILDAH_LAYERS and
    $SOURCE_DATE_EPOCH fill what the flags leave out, as buildah reads them."""
    from kiln.ops.build import BuildOptions

    if kw["squash"] and kw["squash_all"]:  # one keeps the base's layers, the other does not
        raise InvalidArgument("--squash and --squash-all cannot be used together: choose one")
    run = run_settings(kw)  # the RUN flags, shared with kiln run
    files, dockerfile_text = _containerfiles(list(kw["files"]), context)
    if context is None:
        from_file = files and dockerfile_text is None  # beside the Containerfile, as podman
        context = os.path.dirname(os.path.abspath(files[0])) if from_file else "."
    platforms = _split_commas(kw["platforms"])
    # $SOURCE_DATE_EPOCH: the timestamp unless --timestamp, and ARG SOURCE_DATE_EPOCH's value
    sde = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    layers = kw["layers"]
    if layers is None:
        layers = os.environ.get("BUILDAH_LAYERS", "true").lower() not in ("0", "false")
    pull = "always" if kw["pull_always"] else "never" if kw["pull_never"] else kw["pull"]
    image_format = kw["image_format"] or os.environ.get("BUILDAH_FORMAT") or "oci"
    args = _arg_files(tuple(kw["build_arg_files"]))
    args.update(_pairs(tuple(kw["build_args"]), "--build-arg", from_env=True))
    return BuildOptions(
        context=context, dockerfiles=files, dockerfile_text=dockerfile_text,
        tags=list(kw["tags"]), build_args=args, target=kw["target"],
        labels=_pairs(tuple(kw["labels"]), "--label"),
        annotations=_pairs(tuple(kw["annotations"]), "--annotation"),
        image_format=ImageFormat.parse(image_format), pull=PullPolicy.parse(pull),
        no_cache=kw["no_cache"], layers=layers, squash=kw["squash"], squash_all=kw["squash_all"],
        no_cache_filter=_split_commas(kw["no_cache_filter"]),
        source_date_epoch=int(sde) if sde.isdigit() else None,
        iidfile=kw["iidfile"], timestamp=kw["timestamp"],
        platform=platforms[0] if len(platforms) == 1 else None,
        platforms=platforms if len(platforms) > 1 else [], all_platforms=kw["all_platforms"],
        manifest=kw["manifest"], allow=tuple(_split_commas(kw["allow"])), run=run,
        secrets=list(kw["secrets"]), ssh=list(kw["ssh"]), volumes=list(kw["volumes"]),
        quiet=kw["quiet"], outputs=list(kw["outputs"]),
        compression=Compression.parse(kw["compression"]), jobs=kw["jobs"], rm=kw["rm"],
        force_rm=kw["force_rm"], tmpdir=state.tmpdir,
        checks=True, build_contexts=_build_contexts(kw["build_contexts"]),
        cache_from=list(kw["cache_from"]), cache_to=list(kw["cache_to"]), push=kw["push"],
        registry=kw["registry_options"],
    )  # fmt: skip


def _containerfiles(files: list[str], context: str | None) -> tuple[list[str], str | None]:
    """The -f files, and the text of ``-f -`` (read from stdin) if given."""
    from kiln.ops.build import read_containerfile  # start-up: as in command()

    if "-" not in files:
        return files, None
    if context == "-":
        raise InvalidArgument("-f - and a context of - cannot both read stdin")
    text = read_containerfile(sys.stdin, "the Containerfile on stdin")
    return [f for f in files if f != "-"], text
