"""Run one process with an OCI runtime (runc): bundle, ``runc run``, signals, cleanup."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from typing import Any

from kiln.errors import ProcessFailed, Unavailable
from kiln.util.held_signals import handlers_swapped

from .advisory import warn_once
from .bundle import Prepared, prepared
from .cancel import RUN_SIGNALS, stop_kiln, wait_cancellable
from .etc_files import overwrite
from .exec_check import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND
from .options import RunOptions
from .spec import build_spec

_EXTRA_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


#: (name, search path) -> the binary found there, while it is still an executable file
_found: dict[tuple[str, str], str] = {}


def find_runtime(name: str) -> str:
    """The runtime binary's path, or Unavailable saying what to do. A name searched for
    before (every RUN asks) is the same binary while it is still there: one check instead
    of a look in every directory of the search path."""
    missing = Unavailable(f'runtime "{name}" not found: install runc or pass --runtime PATH')
    if "/" in name:
        if os.path.isfile(name) and os.access(name, os.X_OK):
            return name
        raise missing
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(_EXTRA_PATH)
    found = _found.get((name, path))
    if found is not None and os.path.isfile(found) and os.access(found, os.X_OK):
        return found
    found = shutil.which(name, path=path)
    if not found:
        raise missing
    _found[(name, path)] = found
    return found


def runtime_version(name: str = "runc", timeout: float = 10.0) -> str:
    """The first line of ``NAME --version`` (``runc version 1.1.5``); Unavailable when the
    binary is missing, fails or does not answer within ``timeout`` seconds."""
    path = find_runtime(name)
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"runtime {path}: --version failed: {exc}") from None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise Unavailable(f"runtime {path}: --version exited {out.returncode}")
    return lines[0].strip()


def _own_terminal(opts: RunOptions) -> Any:
    """kiln's own terminal for a run asking for one whose stdin is none (else None)."""
    from .console import OwnTerminal, needs_own_terminal  # start-up: only -t runs use it

    return OwnTerminal(opts.stdin, opts.stdout) if needs_own_terminal(True, opts.stdin) else None


def _write_config(p: Prepared, rootfs: str) -> None:
    spec = build_spec(p.opts, rootfs, p.user, p.etc_files)
    # one write (json.dump writes many small pieces), over a reused bundle's old one
    overwrite(os.path.join(p.bundle, "config.json"), json.dumps(spec).encode(), 0o600)


def _log_size(log_path: str) -> int:
    try:
        return os.stat(log_path).st_size
    except OSError:
        return 0


def _runc_error(log_path: str, start: int = 0) -> str:
    """The error runc logged (from offset ``start``: the bundle is reused) when it could not
    start the container ("" if none)."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            f.seek(start)
            lines = f.read(1024 * 1024).splitlines()
    except OSError:
        return ""
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            return str(entry.get("msg", "")).removeprefix("runc run failed: ")
    return ""


def _exec_failure(message: str) -> int | None:
    """127/126 when runc says the command could not be executed, else None."""
    if "exec:" not in message and "exec failed" not in message:
        return None
    if "not found" in message or "no such file" in message:
        return EXIT_NOT_FOUND
    if "permission denied" in message or "is a directory" in message:
        return EXIT_NOT_EXECUTABLE
    return None


def _stdio(stream: Any) -> Any:
    return stream if stream is not None else None


class _Forwarder:
    """A container's ``runc kill``: ``forward`` is the signal handler that delivers kiln's
    SIGINT/SIGTERM/... to it while it runs (``signal_handlers``)."""

    def __init__(self, base: list[str], run_id: str):
        self.base = base
        self.run_id = run_id
        self.count = 0

    def kill(self, signum: int) -> None:
        subprocess.run(
            [*self.base, "kill", self.run_id, str(signum)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=False,
        )  # fmt: skip

    def forward(self, signum: int, _frame: object = None, _replaced: object = None) -> None:
        # The container's PID 1 ignores signals it has no handler for: a second signal kills.
        self.count += 1
        self.kill(signum if self.count == 1 else signal.SIGKILL)


def signal_handlers(
    forwarder: _Forwarder, stops_kiln: bool
) -> contextlib.AbstractContextManager[None]:
    """The handlers while the container runs: kiln's signals go to it (``kiln run``), or,
    ``stops_kiln`` (a build's RUN), interrupt kiln instead, as buildah stops a build."""
    return handlers_swapped(RUN_SIGNALS, stop_kiln if stops_kiln else forwarder.forward)


def _while_starting(binary: str, opts: RunOptions) -> None:
    """What kiln does while runc sets the container up (tens of ms, waiting in runc and the
    kernel): the advisory lookup and its warning (dpkg's files or ``runc --version``, and
    logging's import), then the caller's ``while_running``. Before runc was started, they
    made every first RUN wait for them."""
    warn_once(binary)
    if opts.while_running is not None:
        opts.while_running()


def run_oci(opts: RunOptions, rootfs: str) -> int:
    """Run ``opts.args`` in ``rootfs`` with runc; returns the process's exit code."""
    binary = find_runtime(opts.runtime)
    with prepared(opts, rootfs) as p:
        _write_config(p, os.path.abspath(rootfs))
        state = os.path.join(p.state_dir, "runc")
        os.makedirs(state, mode=0o700, exist_ok=True)
        log_path = os.path.join(p.bundle, "runc.log")
        log_start = _log_size(log_path)  # runc appends: this run's lines come after
        base = [binary, "--root", state]
        cmd = [*base, "--log", log_path, "--log-format", "json",
               "run", "--bundle", p.bundle, p.run_id]  # fmt: skip
        proc = None
        # a terminal asked for without one (CI): kiln's own, relayed (kiln.runtime.console)
        own_tty = _own_terminal(opts) if opts.terminal else None
        stdio: dict[str, Any] = {
            "stdin": _stdio(opts.stdin), "stdout": _stdio(opts.stdout),
            "stderr": _stdio(opts.stderr),
        } if own_tty is None else own_tty.popen_args()  # fmt: skip
        try:
            forwarder = _Forwarder(base, p.run_id)
            with signal_handlers(forwarder, stops_kiln=opts.cancel is not None):
                try:
                    proc = subprocess.Popen(cmd, close_fds=True, cwd=p.bundle, **stdio)
                except OSError as e:
                    raise Unavailable(f'runtime "{opts.runtime}" cannot be started: {e}') from None
                if own_tty is not None:
                    own_tty.started()
                try:
                    _while_starting(binary, opts)
                    if opts.cancel is None:
                        code = proc.wait()
                    else:
                        code = wait_cancellable(
                            proc.poll,
                            opts.cancel,
                            forwarder.kill,
                            opts.cancel_grace,
                            proc.kill,
                            pid=proc.pid,
                        )
                except BaseException:
                    forwarder.kill(signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=10)
                    raise
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            if own_tty is not None:
                own_tty.finish()
            # `runc run` removes its container when it exits; only a run that was killed
            # (or could not finish) leaves its state behind: delete that one
            if os.path.lexists(os.path.join(state, p.run_id)):
                subprocess.run(
                    [*base, "delete", "--force", p.run_id],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, check=False,
                )  # fmt: skip
        if code == 1:
            error = _runc_error(log_path, log_start)
            failure = _exec_failure(error)
            if failure is not None:
                # what check_command could not foresee (runc has printed its line too)
                problem = error.removeprefix("unable to start container process: ")
                raise ProcessFailed(f"running container: {problem}", failure)
            if error:
                raise Unavailable(
                    f"{os.path.basename(binary)} could not start the container: {error}"
                )
        return code
