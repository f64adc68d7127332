"""``kiln``: the command-line front end.

The verbs are the modules of :mod:`kiln.cli.commands` (see :mod:`kiln.cli.lazy`);
none is imported until it runs, so ``kiln --help`` imports no store, image or
registry code. Errors end as one ``Error: ...`` line on stderr and exit 125, as
podman does; a traceback only with ``--debug``.
"""

from __future__ import annotations

import atexit
import functools
import gc
import os
import sys
import threading
from collections.abc import Callable
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType
from typing import Any

import click

from kiln.cli.go_flags import skip_long_lookup_of_short_options
from kiln.cli.lazy import LazyGroup
from kiln.cli.state import State, process_ends_with_command
from kiln.cli.stdout import discard_stdout, tolerate_closed_stderr, write_stdout
from kiln.errors import Interrupted, raise_interrupted
from kiln.util.redact import RedactingFilter, redact

skip_long_lookup_of_short_options()

EXIT_ERROR = 125  # podman's exit code for its own errors


class RootGroup(LazyGroup):
    """The ``kiln`` group; in standalone mode every outcome becomes an exit code and at
    most one ``Error:`` line (this is also what click's CliRunner sees)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        code = guarded(
            lambda: super(RootGroup, self).main(argv, prog_name, complete_var, False, **extra), argv
        )
        sys.exit(code)

    def invoke(self, ctx):
        # click ends a command whose reader went away with exit status 1 (its EPIPE branch);
        # past click, guarded() ends it as a shell sees podman killed by SIGPIPE: 141
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise _ReaderGone() from exc


class _ReaderGone(Exception):
    """Standard output's reader went away (``kiln save x | head -c1``)."""


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2
LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "fatal", "panic", "trace")


@click.group(
    "kiln",
    cls=RootGroup,
    package="kiln.cli.commands",
    aliases={"serve": "kiln.cli.serve:command"},
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help="kiln: build OCI and Docker images without a daemon, and manage a local image store.",
)
@click.option(
    "--root",
    envvar="KILN_ROOT",
    default=None,
    metavar="DIR",
    help="Store root (default $KILN_ROOT, /var/lib/kiln as root, else $XDG_DATA_HOME/kiln)",
)
@click.option("--tmpdir", default=None, metavar="DIR", help="Scratch directory for temporary files")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="warn",
    show_default=True,
    help="Log messages at and above this level",
)
@click.option("--debug", is_flag=True, help="Debug logging and tracebacks for unexpected errors")
@click.option(
    "--progress",
    type=click.Choice(("auto", "tty", "plain", "json", "quiet")),
    default="auto",
    help="How to show progress: auto, tty (rich), plain lines, json lines, quiet",
)
@click.version_option(package_name="kiln", prog_name="kiln", message="%(prog)s version %(version)s")
@click.pass_context
def cli(ctx: click.Context, root, tmpdir, log_level, debug, progress) -> None:
    state = ctx.ensure_object(State)
    state.root, state.tmpdir, state.debug, state.progress = root, tmpdir, debug, progress
    state.log_level = "debug" if debug else log_level.lower()
    _setup_logging(state.log_level)


def _setup_logging(level: str) -> None:
    """Configure logging for ``level`` once something imports it: a command that logs
    nothing (kiln images, inspect) does not import logging (~9 M instructions)."""
    after_import("logging", functools.partial(_configure_logging, level))


def _configure_logging(level: str) -> None:
    import logging

    mapping = {"trace": "DEBUG", "warn": "WARNING", "fatal": "CRITICAL", "panic": "CRITICAL"}
    logging.basicConfig(
        level=getattr(logging, mapping.get(level, level.upper()), logging.WARNING),
        format="%(levelname)s[%(name)s] %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())


def after_import(name: str, then: Callable[[], None]) -> None:
    """Call ``then()`` once top-level module ``name`` is imported: now if it already is, else
    right after its first import, by a one-shot finder at the head of ``sys.meta_path`` that
    finds the module as the path finder would and wraps its loader (an earlier call's wish
    for ``name`` is replaced)."""
    if name in sys.modules:
        then()
        return
    sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "module_name", None) != name]
    sys.meta_path.insert(0, _AfterImport(name, then))


class _AfterImport:
    """The one-shot meta path finder of :func:`after_import`."""

    def __init__(self, name: str, then: Callable[[], None]):
        self.module_name, self.then = name, then

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname != self.module_name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = PathFinder.find_spec(fullname, path, target)
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        run, then = loader.exec_module, self.then

        def exec_module(module: ModuleType) -> None:
            run(module)
            then()

        loader.exec_module = exec_module
        return spec


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("KILN_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> None:
    """The console script: exits with the process exit code. Run as the process's own
    command line (``argv`` None) it ends the process without the interpreter's teardown;
    a caller passing ``argv`` gets the SystemExit back."""
    if argv is None:
        _collect_young_objects_less_often()
        process_ends_with_command()
        tolerate_closed_stderr()
        _stop_on_sigterm()
    try:
        cli.main(args=argv, prog_name="kiln")
    except SystemExit as exc:
        if argv is None:
            _exit_without_teardown(exc.code)
        raise


# A fresh command allocates a few hundred thousand objects while it imports its modules, and
# almost none of them are garbage: with the default 700 the collector ran 63 times in a short
# build and found a few hundred cycles. From the console script on, 50,000 young objects (a
# few MB at most) between collections: 27 collections there (all before ``main``), 2.5% fewer
# instructions. A long build or ``kiln serve`` still collects, over a larger young generation.
# Set here, not at import: an in-process caller (``run``, tests) keeps its own settings.
YOUNG_GENERATION_THRESHOLD = 50_000


def _collect_young_objects_less_often() -> None:
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)


def _stop_on_sigterm() -> None:
    """SIGTERM (``timeout``, ``kill``, a CI runner cancelling a job, systemd stopping a
    unit) stops the command as Ctrl-C does: it cleans up on the way out (a RUN's container
    and mounts, a pull's staged layers and lease, a scratch directory) and exits 143, as
    podman and buildah do. By default Python died on the spot and left all that for the
    next command to sweep. A SIGTERM the caller set to be ignored stays ignored. Both
    signals are noted as they come (``_noted``)."""
    import _signal  # type: ignore[import-not-found]  # C: ``signal`` builds enums (1 ms)

    if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
        _signal.signal(_signal.SIGTERM, _noted(raise_interrupted))
    if _signal.getsignal(_signal.SIGINT) == _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _noted(_signal.default_int_handler))


#: the signals that have stopped this command (the console script's handlers note them)
_STOPPED_BY: list[int] = []


def _noted(handler: Callable[[int, Any], None]) -> Callable[[int, Any], None]:
    """``handler``, noting its signal first: Python may turn the interrupt it raises into
    another error on its way out (3.11 wraps it in a RuntimeError when it lands in a class's
    ``__set_name__``, an import a C module makes becomes an ImportError), which still ends the
    command as stopped by that signal, not as a bug."""

    def note_then_handle(signum: int, frame: Any) -> None:
        _STOPPED_BY.append(signum)
        handler(signum, frame)

    return note_then_handle


def _exit_without_teardown(code: object) -> None:
    """End the process now that the command is done: output flushed and atexit handlers
    run as at any exit, but without the interpreter tearing down every module and object
    (30 ms or more of CPU, a tenth of a short command). Not while another thread runs (a
    normal exit would wait for it), and never for an in-process caller (``run``, ``cli``,
    ``main(argv)``)."""
    if threading.active_count() != 1 or not (code is None or type(code) is int):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()  # logging's shutdown, temp dirs' finalizers, ...
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # e.g. a closed pipe: the normal exit reports it as usual
        return
    os._exit(code or 0)


def run(args: list[str], prog_name: str = "kiln") -> int:
    """Run one invocation in this process and return its exit code (no SystemExit)."""
    return guarded(lambda: cli.main(args, prog_name, None, False), list(args))


def guarded(invoke, args: list[str]) -> int:
    """Call ``invoke`` and map every outcome to an exit code, printing at most one error line."""
    from kiln.errors import KilnError, ProcessFailed, translated

    try:
        rv = invoke()  # click returns Exit's code in non-standalone mode
        write_stdout("")  # what the command printed: a failure is an error naming stdout
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort as exc:  # click's name for a KeyboardInterrupt
        return _interrupted(exc.__cause__)
    except _NO_ARGS_IS_HELP as exc:
        click.echo(exc.ctx.get_help())
        _error(f"missing command '{exc.ctx.command_path} COMMAND'")
        return EXIT_ERROR
    except click.ClickException as exc:  # usage errors, bad options
        _error(exc.format_message())
        return EXIT_ERROR
    except ProcessFailed as exc:  # e.g. a command kiln run could not start: 127/126
        _error(str(exc))
        return exc.exit_code or EXIT_ERROR
    except KilnError as exc:
        _error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except (BrokenPipeError, _ReaderGone):
        discard_stdout()  # the reader went away (kiln images | head): exit quietly
        return 141
    except Exception as exc:  # a bug: short message, traceback only with --debug
        if _STOPPED_BY:  # an interrupt Python turned into another error (see _noted)
            return _interrupted(Interrupted(_STOPPED_BY[0]))
        known = translated(exc)
        if isinstance(known, KilnError):  # a system condition a user can fix (a full disk)
            _error(str(known))
            return EXIT_ERROR
        if _debug_requested(args):
            import traceback

            traceback.print_exc()
        _error(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return EXIT_ERROR


def _interrupted(exc: BaseException | None) -> int:
    """Ctrl-C: 130, "interrupted"; another signal that stopped kiln (SIGTERM, or one while
    a RUN waits): 128 + its number, named."""
    import signal

    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    if signum == signal.SIGINT:
        _error("interrupted")
    else:
        try:
            _error(f"stopped by {signal.Signals(signum).name}")
        except ValueError:
            _error(f"stopped by signal {signum}")
    return 128 + signum


def _error(message: str) -> None:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        discard_stdout()
    sys.stderr.write(f"Error: {redact(message)}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    main()
