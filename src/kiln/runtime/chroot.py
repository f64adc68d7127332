"""``--isolation chroot``: namespaces + chroot, no runtime binary.

The parent forks a helper that unshares mount, PID, UTS, IPC (and network unless
``--network host``) namespaces and forks the container's init (PID 1). The init sets up
/proc, a minimal /dev, /sys (read-only), the per-run /etc files and the user's mounts,
chroots, applies rlimits, capabilities and the user, and execs. Every mount vanishes with
the mount namespace.

Not provided, compared to ``oci`` isolation: no seccomp filter, no cgroup resource limits
(--memory, --cpu-*), no device cgroup, only recursive-bind read-only on the top mount of a
volume, and masked paths are best effort.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import signal
import socket
import subprocess
import sys
from typing import Any

from kiln.errors import InvalidArgument, Unavailable
from kiln.util.held_signals import handlers_swapped
from kiln.util.inroot import InRoot
from kiln.util.rootless import in_user_namespace

from . import caps as capabilities
from . import linux
from .bundle import Prepared, prepared
from .cancel import RUN_SIGNALS, stop_kiln, wait_cancellable
from .exec_check import exec_failed
from .options import NAMESPACE_FLAGS, RLIM_INFINITY, Mount, RunOptions, shares_namespace
from .spec import MASKED_PATHS, READONLY_PATHS, process_env, rlimits

EXIT_SETUP_FAILED = 125
_EXEC_FAILED = "\0exec failed:"
_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
              "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}  # fmt: skip


def _fd_of(stream: Any, default: int) -> int:
    if stream is None:
        return default
    if stream == subprocess.DEVNULL:
        return -1
    if isinstance(stream, int):
        if stream < 0:
            raise InvalidArgument("chroot isolation takes files, fds, DEVNULL or None as stdio")
        return stream
    stream.flush()
    return int(stream.fileno())


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class _Root:
    """Mount helpers that reach targets only through in-root resolution (``/proc/self/fd``).

    Each lookup opens the root afresh, so it sees the mounts made so far, and walks it by
    hand (no openat2: this runs in a forked child of a possibly threaded process, where
    loading libc through ctypes for the first time could wait on a lock forever)."""

    def __init__(self, rootfs: str):
        self.rootfs = rootfs

    def open(self, path: str, flags: int) -> int:
        with InRoot.opened(self.rootfs, use_openat2=False) as root:
            return root.open(path, flags)

    def target(self, path: str) -> tuple[int, str]:
        fd = self.open(path, os.O_PATH)
        return fd, f"/proc/self/fd/{fd}"

    def mount(self, source: str | None, path: str, fstype: str | None, flags: int,
              data: str = "") -> None:  # fmt: skip
        fd, target = self.target(path)
        try:
            linux.mount(source, target, fstype, flags, data)
        except OSError as exc:  # name the container's path, not /proc/self/fd/N
            what = fstype or source or "remount"
            raise OSError(
                exc.errno, f"mount {what} on {path}: {os.strerror(exc.errno or 0)}"
            ) from None
        finally:
            os.close(fd)

    def bind(self, source: str, path: str, *, recursive: bool, readonly: bool,
             extra: int = 0) -> None:  # fmt: skip
        flags = linux.MS_BIND | (linux.MS_REC if recursive else 0)
        self.mount(source, path, None, flags)
        if readonly or extra:
            ro = linux.MS_RDONLY if readonly else 0
            self.mount(None, path, None, linux.MS_REMOUNT | linux.MS_BIND | ro | extra)


def _setup_dev(root: _Root, opts: RunOptions) -> None:
    nosuid = linux.MS_NOSUID
    root.mount("tmpfs", "/dev", "tmpfs", nosuid, "mode=755,size=65536k")
    dev = root.open("/dev", os.O_PATH | os.O_DIRECTORY)
    try:
        for name in _DEV_NODES:
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o666, dir_fd=dev))
            root.bind(f"/dev/{name}", f"/dev/{name}", recursive=False, readonly=False)
        for name in ("pts", "shm", "mqueue"):
            os.mkdir(name, 0o755, dir_fd=dev)
        for name, target in _DEV_LINKS.items():
            os.symlink(target, name, dir_fd=dev)
    finally:
        os.close(dev)
    _bind_devices(root, opts)
    root.mount("devpts", "/dev/pts", "devpts", nosuid | linux.MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=0620")  # fmt: skip
    root.mount("shm", "/dev/shm", "tmpfs", nosuid | linux.MS_NODEV | linux.MS_NOEXEC,
               f"mode=1777,size={opts.shm_size}")  # fmt: skip
    root.mount("mqueue", "/dev/mqueue", "mqueue", nosuid | linux.MS_NODEV | linux.MS_NOEXEC)


def _bind_devices(root: _Root, opts: RunOptions) -> None:
    """``--device`` nodes under /dev: the host's bound over files made in the new /dev
    (those elsewhere are among the user's mounts: ``kiln.runtime.devices``)."""
    if not opts.devices:
        return
    from .devices import host_devices  # start-up: only --device needs it

    for device in host_devices(opts.devices):
        if not device.under_dev:
            continue
        fd = root.open("/dev", os.O_PATH | os.O_DIRECTORY)
        try:
            *dirs, name = device.path.split("/")[2:]
            for part in dirs:  # the tmpfs was made just now: nothing in it is a link
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                fd, parent = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW,
                                     dir_fd=fd), fd  # fmt: skip
                os.close(parent)
            flags = os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(name, flags, 0o644, dir_fd=fd))
        finally:
            os.close(fd)
        root.bind(device.source, device.path, recursive=False, readonly=False)


def _user_mount(root: _Root, mount: Mount) -> None:
    if mount.type in ("bind", "cache"):
        recursive = "bind" not in mount.options
        flags = 0
        flags |= linux.MS_NOSUID if "nosuid" in mount.options else 0
        flags |= linux.MS_NODEV if "nodev" in mount.options else 0
        flags |= linux.MS_NOEXEC if "noexec" in mount.options else 0
        root.bind(mount.source, mount.destination, recursive=recursive,
                  readonly=mount.readonly, extra=flags)  # fmt: skip
    elif mount.type == "overlay":  # --volume ...:O, its directories made (volume_options)
        data = ",".join(o for o in mount.options if "=" in o)
        flags = 0
        flags |= linux.MS_NOSUID if "nosuid" in mount.options else 0
        flags |= linux.MS_NODEV if "nodev" in mount.options else 0
        flags |= linux.MS_NOEXEC if "noexec" in mount.options else 0
        root.mount("overlay", mount.destination, "overlay", flags, data)
    else:
        data = ",".join(o for o in mount.options if "=" in o)
        flags = linux.MS_NOSUID | linux.MS_NODEV
        flags |= linux.MS_RDONLY if mount.readonly else 0
        flags |= linux.MS_NOEXEC if "noexec" in mount.options else 0
        root.mount("tmpfs", mount.destination, "tmpfs", flags, data)


def _mask(root: _Root) -> None:
    for path in MASKED_PATHS:
        with contextlib.suppress(OSError):
            fd, target = root.target(path)
            try:
                if os.path.isdir(target):
                    linux.mount("tmpfs", target, "tmpfs", linux.MS_RDONLY, "size=0")
                else:
                    linux.mount("/dev/null", target, None, linux.MS_BIND)
            finally:
                os.close(fd)
    for path in READONLY_PATHS:
        with contextlib.suppress(OSError):
            root.bind(path, path, recursive=True, readonly=True)


def _setup_mounts(p: Prepared, rootfs: str) -> None:
    opts = p.opts
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
    root = _Root(rootfs)
    hardening = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    root.mount("proc", "/proc", "proc", hardening)
    _setup_dev(root, opts)
    # in a user namespace /sys's submounts are locked to it: only a recursive bind may copy it
    root.bind("/sys", "/sys", recursive=in_user_namespace(), readonly=True, extra=hardening)
    user_dests = {m.destination.rstrip("/") or "/" for m in opts.mounts}
    for dest, source in p.etc_files.items():
        if dest not in user_dests:
            root.bind(source, dest, recursive=False, readonly=False, extra=hardening)
    for mount in opts.mounts:
        _user_mount(root, mount)
    _mask(root)
    if opts.readonly_rootfs:
        linux.mount(None, rootfs, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY)


def _apply_limits(opts: RunOptions) -> None:
    for limit in rlimits(opts):
        soft = resource.RLIM_INFINITY if limit.soft == RLIM_INFINITY else limit.soft
        hard = resource.RLIM_INFINITY if limit.hard == RLIM_INFINITY else limit.hard
        resource.setrlimit(getattr(resource, limit.name), (soft, hard))


def _apply_identity(p: Prepared) -> None:
    keep = capabilities.effective_set(p.opts.cap_add, p.opts.cap_drop)
    mask = 0
    for name in keep:
        mask |= 1 << capabilities.CAP_NUMBERS[name]
    for number in range(capabilities.last_cap() + 1):
        if not mask & (1 << number):
            linux.prctl(linux.PR_CAPBSET_DROP, number)
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    if p.opts.no_new_privileges:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    os.setgroups(list(p.user.additional_gids))
    os.setgid(p.user.gid)
    os.setuid(p.user.uid)  # a non-root user loses every capability here
    if p.user.uid == 0:
        linux.capset(mask)


def _container_init(p: Prepared, rootfs: str, stdio: list[int], errw: int) -> None:
    """PID 1 of the new namespaces; never returns."""
    opts = p.opts
    try:
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        _setup_mounts(p, rootfs)
        if opts.network != "host":
            linux.loopback_up()
        if not shares_namespace(opts.uts):
            socket.sethostname(opts.hostname)
        os.chdir(rootfs)
        os.chroot(".")
        os.chdir(opts.cwd or "/")
        _apply_limits(opts)
        _apply_identity(p)
        env = dict(item.split("=", 1) for item in process_env(opts, p.user))
        copies = [os.dup(fd) for fd in stdio]  # so no dup2 below clobbers a later source
        for target, fd in enumerate(copies):
            os.dup2(fd, target)
        os.closerange(3, errw)
        os.closerange(errw + 1, 65536)
    except BaseException as e:  # report to the parent, never run Python code of kiln's
        with contextlib.suppress(BaseException):
            os.write(errw, f"chroot isolation setup failed: {e}".encode())
        os._exit(EXIT_SETUP_FAILED)
    try:
        os.execvpe(opts.args[0], opts.args, env)
    except BaseException as e:
        code, what = 127, "executable file not found in $PATH"
        if "/" in opts.args[0]:
            what = "no such file or directory"
        if isinstance(e, PermissionError | IsADirectoryError):
            code, what = 126, "permission denied"
        with contextlib.suppress(BaseException):  # the parent raises it as ProcessFailed
            os.write(errw, f"{_EXEC_FAILED}{code}:{what}".encode())
        os._exit(code)


def _close_inherited(keep: set[int]) -> None:
    """Close every descriptor but ``keep``: forked without exec, the helper holds all of
    kiln's, among them other runs' pipes, whose readers would wait for it to end. No
    finaliser may close a number reused afterwards (gc off), nor a signal write to one."""
    gc.disable()
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    low = 0
    for fd in sorted(keep):
        if low < fd:  # closerange(0, 0) closes everything
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 65536)


def _helper(p: Prepared, rootfs: str, stdio: list[int], errw: int) -> None:
    """Unshare, fork the container's init, wait for it; never returns."""
    code = EXIT_SETUP_FAILED
    try:
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        _close_inherited({0, 1, 2, errw, *stdio})
        flags = linux.CLONE_NEWNS
        for kind, flag in (("pid", linux.CLONE_NEWPID), ("uts", linux.CLONE_NEWUTS),
                           ("ipc", linux.CLONE_NEWIPC)):  # fmt: skip
            if getattr(p.opts, kind) != "host":  # a path is refused by run_chroot
                flags |= flag
        if p.opts.network != "host":
            flags |= linux.CLONE_NEWNET
        linux.unshare(flags)
        pid = os.fork()
        if pid == 0:
            _container_init(p, rootfs, stdio, errw)
        os.close(errw)
        received = []

        def forward(signum: int, _frame: object) -> None:
            # PID 1 ignores signals it has no handler for: a second signal kills.
            received.append(signum)
            os.kill(pid, signum if len(received) == 1 else signal.SIGKILL)

        for sig in RUN_SIGNALS:
            with contextlib.suppress(ValueError):
                signal.signal(sig, forward)
        code = _exit_code(os.waitpid(pid, 0)[1])
    except BaseException as e:
        with contextlib.suppress(BaseException):
            os.write(errw, f"chroot isolation failed: {e}".encode())
    finally:
        os._exit(code)


def _wait(pid: int, opts: RunOptions) -> int:
    """The helper's wait status; on ``opts.cancel``: SIGTERM (forwarded to the container's
    init), then SIGKILL (the init dies with its parent, and the PID namespace with it)."""
    if opts.cancel is None:
        return os.waitpid(pid, 0)[1]
    status: list[int] = []

    def poll() -> int | None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status.append(st)
            return _exit_code(st)
        return None

    def stop(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    wait_cancellable(poll, opts.cancel, stop, opts.cancel_grace, pid=pid)
    return status[0]


def run_chroot(opts: RunOptions, rootfs: str) -> int:
    """Run ``opts.args`` in ``rootfs`` with chroot isolation; returns the exit code."""
    if os.geteuid() != 0:
        raise Unavailable("chroot isolation needs root: run kiln as root or use --isolation oci")
    for kind in NAMESPACE_FLAGS:
        if getattr(opts, kind).startswith("/"):
            raise InvalidArgument(
                f"--{kind} {getattr(opts, kind)}: joining a namespace by its path needs "
                "--isolation oci"
            )
    rootfs = os.path.abspath(rootfs)
    with prepared(opts, rootfs) as p:
        stdio = [_fd_of(opts.stdin, 0), _fd_of(opts.stdout, 1), _fd_of(opts.stderr, 2)]
        devnull = os.open(os.devnull, os.O_RDWR) if -1 in stdio else -1
        stdio = [devnull if fd == -1 else fd for fd in stdio]
        sys.stdout.flush()
        sys.stderr.flush()
        errr, errw = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(errr)
            _helper(p, rootfs, stdio, errw)
        os.close(errw)
        if devnull != -1:
            os.close(devnull)

        def forward(signum: int, _frame: object, _replaced: object) -> None:
            os.kill(pid, signum)

        try:
            with handlers_swapped(RUN_SIGNALS, stop_kiln if opts.cancel is not None else forward):
                if opts.while_running is not None:  # while the helper sets up and execs
                    opts.while_running()
                with os.fdopen(errr, "rb") as f:
                    error = f.read(65536).decode("utf-8", "replace")
                status = _wait(pid, opts)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        if error.startswith(_EXEC_FAILED):
            code, _, what = error.removeprefix(_EXEC_FAILED).partition(":")
            raise exec_failed(opts.args[0], what, int(code))
        if error:
            raise Unavailable(error)
        return _exit_code(status)
