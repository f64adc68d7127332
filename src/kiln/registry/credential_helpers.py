"""Docker credential helpers: ``docker-credential-<name> get|store|erase``.

The protocol (docker/docker-credential-helpers): ``get`` and ``erase`` read the server
URL on stdin; ``store`` reads ``{"ServerURL", "Username", "Secret"}``; ``get`` prints the
same object (``Username`` ``<token>`` means ``Secret`` is an identity token). A helper
that knows no such server says "credentials not found" and exits non-zero. Every call
is bounded; a helper's output never reaches a message (it may hold a secret).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time

from kiln.errors import InvalidArgument
from kiln.registry.credential import Credential
from kiln.util.cancel import cancelled_error, when_cancelled

HELPER_TIMEOUT = 60.0  # seconds: a helper may ask the user to unlock a keychain
MAX_HELPER_OUTPUT = 1 << 20  # bytes a helper may print (a credential, an error line)


def _call(helper: str, action: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    """Run the helper in a session of its own: on a timeout the whole group is killed,
    so nothing it started (a shell script's children) outlives the call. What it prints
    is read up to MAX_HELPER_OUTPUT: a credential is a few KB, not all of memory."""
    program = f"docker-credential-{helper}"
    if "/" in helper or "\0" in helper or not helper:
        raise InvalidArgument(
            f"credential helper name {helper!r} is no name (in a registry auth file)"
        )
    try:
        proc = subprocess.Popen(
            [program, action],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # never shown: it may hold a secret
            start_new_session=True,
        )
    except FileNotFoundError:
        raise InvalidArgument(
            f"credential helper {program} is not installed (named in a registry auth file)"
        ) from None
    except OSError as exc:  # not executable, not a program
        raise InvalidArgument(
            f"credential helper {program} cannot be run: {exc.strerror}"
        ) from None
    try:
        # a Ctrl-C reaching a worker thread (a build's stage), an API client gone: the
        # helper, in a session of its own, is killed
        with when_cancelled(lambda: _signal_group(proc)) as flag:
            out = _exchange(proc, data, time.monotonic() + HELPER_TIMEOUT)
        if flag is not None and flag.is_set():
            raise cancelled_error(flag)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise InvalidArgument(
            f"credential helper {program} did not answer {action} within {HELPER_TIMEOUT:g}s"
        ) from None
    except _TooMuchOutput:
        _kill(proc)
        raise InvalidArgument(
            f"credential helper {program} printed more than {MAX_HELPER_OUTPUT} bytes "
            f"for {action}: that is no credential"
        ) from None
    except BaseException:
        _kill(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, b"")


class _TooMuchOutput(Exception):
    pass


def _exchange(proc: subprocess.Popen[bytes], data: bytes, deadline: float) -> bytes:
    """Write ``data`` to the helper's stdin and read its stdout to the end (at most
    MAX_HELPER_OUTPUT bytes), then wait for it to exit, all by ``deadline``."""
    assert proc.stdin is not None and proc.stdout is not None
    pending, out = memoryview(data), bytearray()
    with selectors.DefaultSelector() as sel:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE)
        sel.register(proc.stdout, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, HELPER_TIMEOUT)
            for key, _ in sel.select(left):
                if key.fileobj is proc.stdin:
                    try:
                        pending = pending[os.write(proc.stdin.fileno(), pending[:65536]) :]
                    except BrokenPipeError:  # it reads no more: what it prints still counts
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    sel.unregister(proc.stdout)
                out += chunk
                if len(out) > MAX_HELPER_OUTPUT:
                    raise _TooMuchOutput
    proc.stdout.close()
    proc.wait(max(deadline - time.monotonic(), 0.001))
    return bytes(out)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    _signal_group(proc)
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def _signal_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _not_found(proc: subprocess.CompletedProcess[bytes]) -> bool:
    text = proc.stdout.decode(errors="replace").strip().lower()
    return "not found" in text or not text


def _failed(helper: str, action: str, proc: subprocess.CompletedProcess[bytes]) -> InvalidArgument:
    return InvalidArgument(
        f"credential helper docker-credential-{helper} {action} failed "
        f"with exit status {proc.returncode}"
    )


def run_helper(helper: str, server: str) -> Credential | None:
    """``get``: the credential, or None when the helper knows no such server."""
    proc = _call(helper, "get", server.encode())
    if proc.returncode != 0:
        if _not_found(proc):
            return None
        raise _failed(helper, "get", proc)
    if not proc.stdout.strip():
        raise InvalidArgument(
            f"credential helper docker-credential-{helper} printed nothing for get"
        )
    try:
        obj = json.loads(proc.stdout)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise InvalidArgument(
            f"credential helper docker-credential-{helper} printed something other than JSON"
        )
    user, secret = obj.get("Username", ""), obj.get("Secret", "")
    if not isinstance(user, str) or not isinstance(secret, str):
        raise InvalidArgument(
            f"credential helper docker-credential-{helper}: Username and Secret must be strings"
        )
    if user == "<token>":
        return Credential("", "", secret)
    return Credential(user, secret) if (user or secret) else None


def store_in_helper(helper: str, server: str, cred: Credential) -> None:
    """``store``: hand ``cred`` for ``server`` to the helper."""
    user, secret = cred.username, cred.password
    if cred.identity_token and not (user or secret):
        user, secret = "<token>", cred.identity_token
    data = json.dumps({"ServerURL": server, "Username": user, "Secret": secret}).encode()
    proc = _call(helper, "store", data)
    if proc.returncode != 0:
        raise _failed(helper, "store", proc)


def erase_from_helper(helper: str, server: str) -> bool:
    """``erase``: True when the helper forgot a credential, False when it had none."""
    proc = _call(helper, "erase", server.encode())
    if proc.returncode != 0:
        if _not_found(proc):
            return False
        raise _failed(helper, "erase", proc)
    return True
