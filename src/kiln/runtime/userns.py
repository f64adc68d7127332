"""Rootless kiln: move an unprivileged user's kiln into a user namespace of its own.

As ``buildah unshare`` and podman's rootless re-exec: kiln forks; the child unshares a user
and a mount namespace and waits; the parent maps the child's ids with the setuid helpers
``newuidmap``/``newgidmap`` (Debian's ``uidmap``) from the user's ``/etc/subuid`` and
``/etc/subgid`` ranges, then waits for the child and exits with its status. The child goes on
with the command as uid 0 of the namespace::

    namespace id   on disk
    0              the user's own uid (gid)
    1 .. N         subordinate base .. base + N - 1

So a file owned by uid N in an image is owned by ``base + N - 1`` in the store, and
``stat`` inside the namespace (where commits read it) says N again: layers keep the image's
ids. Inside, overlayfs mounts (kernel >= 5.11), runc runs without cgroups, and the chroot
isolation works as for root. A RUN left running by a killed kiln is cleared by the next
kiln command (kiln.ops.context.sweep_leftovers); no PID namespace of kiln's own, since
owners of in-flight work are PIDs (kiln.util.process_owner) every kiln must see alike.

A user without subordinate ranges gets a clear error rather than podman's single-id
mapping: with one id, every layer holding a file of another owner (most distribution
images) and every RUN that changes an owner fails half-way through a build.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading

from kiln.errors import Unavailable
from kiln.util.rootless import ROOTLESS_UID_ENV

from . import linux

CLONE_NEWUSER = 0x10000000
SUBUID_FILE = "/etc/subuid"
SUBGID_FILE = "/etc/subgid"
_FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGINT)
_HELPER_TIMEOUT = 30.0


def subordinate_ranges(path: str, name: str, ident: int) -> list[tuple[int, int]]:
    """The ``(start, count)`` ranges of ``path`` for the user ``name`` or id ``ident``."""
    ranges = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read(1 << 20).splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise Unavailable(f"cannot read {path}: {exc.strerror}") from None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (name, str(ident)):
            continue
        if parts[1].isdigit() and parts[2].isdigit() and int(parts[2]) > 0:
            ranges.append((int(parts[1]), int(parts[2])))
    return ranges


def id_map(own: int, ranges: list[tuple[int, int]]) -> list[int]:
    """The ``newuidmap`` triples: 0 -> ``own``, then the ranges one after another from 1."""
    triples = [0, own, 1]
    inside = 1
    for start, count in ranges:
        triples += [inside, start, count]
        inside += count
    return triples


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _helper(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if not found:
        raise Unavailable(
            f"rootless kiln needs {name}: install the uidmap package (newuidmap, newgidmap)"
        )
    return found


def _mappings() -> tuple[list[int], list[int]]:
    uid, gid = os.geteuid(), os.getegid()
    name = _user_name(uid)
    uids = subordinate_ranges(SUBUID_FILE, name, uid)
    gids = subordinate_ranges(SUBGID_FILE, name, uid)
    if not uids or not gids:
        missing = SUBUID_FILE if not uids else SUBGID_FILE
        raise Unavailable(
            f"rootless kiln needs subordinate ids for user {name}: {missing} has no range "
            f"for it; add one as root, e.g. `usermod --add-subuids 100000-165535 "
            f"--add-subgids 100000-165535 {name}`, or run kiln as root"
        )
    return id_map(uid, uids), id_map(gid, gids)


def enter() -> None:
    """Unless kiln is root already (or inside its namespace), continue in a new user and mount
    namespace as uid 0 there; the calling process becomes a waiter and never returns."""
    if os.geteuid() == 0:
        return
    if threading.active_count() > 1:
        raise Unavailable("kiln cannot enter its user namespace once threads are running")
    uid_map, gid_map = _mappings()
    newuidmap, newgidmap = _helper("newuidmap"), _helper("newgidmap")
    real_uid = os.geteuid()
    sys.stdout.flush()
    sys.stderr.flush()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        _child(ready_w, go_r, real_uid)
        return
    os.close(ready_w)
    os.close(go_r)
    try:
        ok = os.read(ready_r, 1) == b"1"
        if not ok:
            _reap(pid)
            raise Unavailable(
                "cannot create a user namespace: unprivileged user namespaces may be disabled "
                "(sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces)"
            )
        for helper, triples in ((newuidmap, uid_map), (newgidmap, gid_map)):
            _run_helper(helper, pid, triples)
        os.write(go_w, b"1")
    except BaseException:
        with contextlib.suppress(OSError):
            os.write(go_w, b"0")
        _reap(pid)
        raise
    finally:
        os.close(ready_r)
        os.close(go_w)
    os._exit(_wait(pid))


def _run_helper(helper: str, pid: int, triples: list[int]) -> None:
    cmd = [helper, str(pid), *map(str, triples)]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_HELPER_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{os.path.basename(helper)} failed: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise Unavailable(
            f"{os.path.basename(helper)} could not map the ids of /etc/subuid and /etc/subgid: "
            f"{detail[0]}"
        )


def _child(ready_w: int, go_r: int, real_uid: int) -> None:
    try:
        linux.unshare(CLONE_NEWUSER | linux.CLONE_NEWNS)
    except OSError:
        os.write(ready_w, b"0")
        os._exit(125)
    os.write(ready_w, b"1")
    os.close(ready_w)
    go = os.read(go_r, 1)
    os.close(go_r)
    if go != b"1":
        os._exit(125)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    with contextlib.suppress(OSError):
        os.setgroups([])
    # mounts made here stay here
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    # parent death: the waiter went away (killed): stop too rather than run on unseen
    with contextlib.suppress(OSError):
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.environ[ROOTLESS_UID_ENV] = str(real_uid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _wait(pid: int) -> int:
    """Wait for the namespace's kiln; pass termination signals on; its exit status."""
    # Ctrl-C reaches both processes through the terminal's process group: the child decides.
    for sig in _FORWARDED:
        signal.signal(sig, lambda s, _f: _forward(pid, s))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            return 125
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _forward(pid: int, signum: int) -> None:
    if signum == signal.SIGINT:
        return  # the terminal sent it to the child as well
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
