"""Start a command, wait for a line of its output, SIGKILL it, reap it: the kill tests' steps.

    with started([sys.executable, "-m", "kiln.cli.main", "build", ctx], "started", env=env):
        ...  # the RUN is running; on leaving the block the command is SIGKILLed and reaped

    kill_when_started(argv, "started", env=env)  # the same, with nothing to do in between

The output (stdout and stderr together) is read with a deadline: a command that never
prints the line fails the test with what it did print, within ``timeout`` seconds, instead
of blocking a bare ``for line in proc.stdout`` until pytest's own timeout. The block's exit
always reaps the process (``wait`` with a bound), so no test leaves a zombie of its own.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from mount_points import unmount_under

STARTS_WITHIN = 120.0  # seconds: a build's first RUN on a loaded machine, with a wide margin
REAP_WITHIN = 30.0


def _matcher(line: str | Callable[[str], bool]) -> Callable[[str], bool]:
    if callable(line):
        return line
    return lambda text: text.strip() == line


def wait_for_line(
    proc: subprocess.Popen, line: str | Callable[[str], bool], timeout: float = STARTS_WITHIN
) -> list[str]:
    """Read ``proc.stdout`` (a binary pipe) until a line equals ``line`` (stripped) or
    ``line(text)`` is true; the lines read. Fails the test if the command ends or ``timeout``
    passes first."""
    match = _matcher(line)
    fd = proc.stdout.fileno()
    seen: list[str] = []
    pending = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no line {line!r} within {timeout:.0f} s; output so far: {seen}")
            if not sel.select(left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"the command ended before printing {line!r}; output: {seen}")
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                text = raw.decode(errors="replace")
                seen.append(text)
                if match(text):
                    return seen


def kill_and_reap(
    proc: subprocess.Popen, sig: int = signal.SIGKILL, grace: float = REAP_WITHIN
) -> int | None:
    """Send ``sig`` if it still runs and wait up to ``grace`` seconds; SIGKILL it then if
    ``sig`` was not enough. The exit code (negative: the signal that ended it)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=REAP_WITHIN)
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


@contextlib.contextmanager
def started(
    argv: list[str],
    line: str | Callable[[str], bool],
    *,
    env: dict[str, str] | None = None,
    timeout: float = STARTS_WITHIN,
) -> Iterator[subprocess.Popen]:
    """``argv`` running, once it has printed ``line``; SIGKILLed and reaped on exit (unless
    the block already ended it: then only reaped)."""
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for_line(proc, line, timeout)
        yield proc
    finally:
        kill_and_reap(proc)


def kill_when_started(
    argv: list[str],
    line: str | Callable[[str], bool],
    *,
    env: dict[str, str] | None = None,
    timeout: float = STARTS_WITHIN,
) -> int | None:
    """Start ``argv``, SIGKILL it once it has printed ``line``, reap it; its exit code."""
    with started(argv, line, env=env, timeout=timeout) as proc:
        pass
    return proc.returncode


def remove_runc_containers(state_dir: str | os.PathLike[str]) -> list[str]:
    """Force-remove (SIGKILL and delete) every runc container of ``state_dir`` (a test's own
    ``KILN_RUNTIME_DIR``/runc): what a killed kiln left running, and only the test's own,
    unlike a ``pkill -f`` of a name that another run on the machine may use too."""
    state = os.fspath(state_dir)
    if not os.path.isdir(state):
        return []
    listed = subprocess.run(["runc", "--root", state, "list", "-q"], capture_output=True,
                            text=True, timeout=30, check=False).stdout.split()  # fmt: skip
    for cid in listed:
        subprocess.run(["runc", "--root", state, "delete", "--force", cid], capture_output=True,
                       timeout=30, check=False)  # fmt: skip
    return listed


def clean_up_after_kills(
    tmp_path: str | os.PathLike[str], runc_state: str | os.PathLike[str]
) -> None:
    """The teardown of a fixture whose tests kill kiln commands: what a test that failed
    midway left behind, and only its own. The runc containers of its runtime directory
    ``runc_state`` first (they keep their root filesystems busy), then whatever is still
    mounted under ``tmp_path`` (a killed build's overlay, a view)."""
    remove_runc_containers(runc_state)
    unmount_under(tmp_path)
