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
import signal
import subprocess

from kiln.errors import InvalidArgument
from kiln.registry.credential import Credential

HELPER_TIMEOUT = 60.0  # seconds: a helper may ask the user to unlock a keychain


def _call(helper: str, action: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    """Run the helper in a session of its own: on a timeout the whole group is killed,
    so nothing it started (a shell script's children) outlives the call."""
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.Popen(
            [program, action],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise InvalidArgument(
            f"credential helper {program} is not installed (named in a registry auth file)"
        ) from None
    try:
        out, err = proc.communicate(data, timeout=HELPER_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise InvalidArgument(
            f"credential helper {program} did not answer {action} within {HELPER_TIMEOUT:g}s"
        ) from None
    except BaseException:
        _kill(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


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
    try:
        obj = json.loads(proc.stdout)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise InvalidArgument(
            f"credential helper docker-credential-{helper} printed something other than JSON"
        )
    user, secret = str(obj.get("Username", "")), str(obj.get("Secret", ""))
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
