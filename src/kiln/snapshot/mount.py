"""The only module in kiln that calls mount(2) and umount(2).

Overlay mounts use the new mount API (fsopen/fsconfig/fsmount/move_mount) with
one ``lowerdir+`` per layer, so an image of any depth mounts: the classic
``mount -o lowerdir=a:b:...`` string is limited to one page. On kernels
without ``lowerdir+`` the classic call is used; if its string is too long the
mount is made from a forked helper whose working directory is the layers'
common parent, with relative paths.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from kiln.errors import InvalidArgument, Unavailable
from kiln.snapshot.spec import OVERLAY_OPTIONS, VOLATILE, MountSpec, supported_overlay_options
from kiln.util.scratch import process_scratch_dir

# syscall numbers >= 424 are the same on every architecture
_SYS_MOVE_MOUNT, _SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 429, 430, 431, 432
_FSOPEN_CLOEXEC = 1
_FSCONFIG_SET_FLAG, _FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 0, 1, 6
_FSMOUNT_CLOEXEC = 1
_MOUNT_ATTR_RDONLY = 1
_MOVE_MOUNT_F_EMPTY_PATH = 4
_AT_FDCWD = -100
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
MNT_DETACH = 2
_PAGE = os.sysconf("SC_PAGE_SIZE")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

#: set by tests to exercise the classic mount(2) path
force_legacy = False


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def _sys(*args: object) -> int:
    ret: int = _libc.syscall(*args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def mount(spec: MountSpec, target: str) -> None:
    """Mount ``spec`` on the existing, unmounted directory ``target``. When it raises, this
    call left nothing mounted there: a Ctrl-C (``KeyboardInterrupt``) that lands just after
    the kernel mounted is raised only once the mount is undone."""
    try:
        _mount_by_type(spec, target)
    except (Unavailable, OSError, InvalidArgument):
        raise  # refused: nothing was mounted
    except BaseException:
        if is_mountpoint(target):
            unmount(target)
        raise


def _mount_by_type(spec: MountSpec, target: str) -> None:
    if spec.type == "bind":
        _bind(spec, target)
    elif spec.type == "overlay":
        if not spec.lowers:
            raise InvalidArgument("an overlay mount needs at least one lower directory")
        try:
            _overlay(spec, target)
        except (Unavailable, OSError):
            if spec.probe_marker:  # the cached "overlay works" may be stale: probe next time
                with contextlib.suppress(OSError):
                    os.unlink(spec.probe_marker)
            raise
    else:
        raise InvalidArgument(f'cannot mount type "{spec.type}": kiln mounts overlay or bind')


def _overlay(spec: MountSpec, target: str) -> None:
    if not force_legacy:
        try:
            _overlay_new_api(spec, target)
            return
        except _NoNewApi:
            pass
    try:
        _overlay_legacy(spec, target)
    except Unavailable as exc:
        if not spec.volatile or getattr(exc, "errno", None) != errno.EINVAL:
            raise
        _overlay_legacy(spec.without(VOLATILE), target)  # a kernel before 5.10


def forget_volatile(spec: MountSpec) -> None:
    """After a clean unmount of a ``volatile`` overlay: remove the marker the kernel left
    in its work dir, without which it refuses to mount that upper again (the marker is
    how it tells a crash; this process saw the unmount, so the upper is whole)."""
    if spec.type != "overlay" or not spec.volatile or not spec.work:
        return
    shutil.rmtree(os.path.join(spec.work, "work", "incompat", VOLATILE), ignore_errors=True)


def unmount(target: str) -> None:
    """Unmount ``target`` (lazily if it is busy); a target that is not mounted is fine."""
    path = os.fsencode(target)
    if _libc.umount2(path, 0) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY and _libc.umount2(path, MNT_DETACH) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return
    raise Unavailable(f"cannot unmount {target}: {os.strerror(err)}")


def _unescape(field: str) -> str:
    """A path as /proc/self/mountinfo writes it (space, tab, newline, backslash as \\ooo)."""
    if "\\" not in field:  # nearly every path: nothing to decode
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


_STATX_ATTR_MOUNT_ROOT = 0x2000
_AT_NO_AUTOMOUNT = 0x800
_statx = getattr(_libc, "statx", None)
if _statx is not None:
    _statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]


def _mount_root(path: str) -> bool | None:
    """Whether ``path`` (symlinks followed) is the root of a mount, from statx's
    STATX_ATTR_MOUNT_ROOT (Linux 5.8): one system call. None where the kernel or the C
    library cannot tell."""
    if _statx is None:
        return None
    buf = ctypes.create_string_buffer(256)  # struct statx
    if _statx(_AT_FDCWD, os.fsencode(path), _AT_NO_AUTOMOUNT, 0, buf) != 0:
        return False if ctypes.get_errno() in (errno.ENOENT, errno.ENOTDIR) else None
    (attributes,) = struct.unpack_from("=Q", buf, 8)  # stx_attributes
    (supported,) = struct.unpack_from("=Q", buf, 56)  # stx_attributes_mask
    if not supported & _STATX_ATTR_MOUNT_ROOT:
        return None
    return bool(attributes & _STATX_ATTR_MOUNT_ROOT)


def is_mountpoint(path: str) -> bool:
    """Whether something is mounted on ``path``, a bind mount of the same filesystem too
    (``os.path.ismount`` cannot see those: same device, another inode). Asked of statx
    (a build step asks twice; /proc/self/mountinfo costs a line per mount on the host),
    else read from mountinfo."""
    known = _mount_root(path)
    if known is not None:
        return known
    try:
        wanted = os.path.realpath(path)
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ", 5)
                if len(fields) > 4 and _unescape(fields[4]) == wanted:
                    return True
    except OSError:
        return os.path.ismount(path)
    return False


def mounts_under(path: str) -> list[str]:
    """Every mount point at or below ``path`` in this mount namespace, deepest first (the
    order to unmount them in)."""
    base = os.path.realpath(path).rstrip("/") or "/"
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ", 5)
                if len(fields) > 4:
                    point = _unescape(fields[4])
                    if point == base or point.startswith(base + "/"):
                        found.append(point)
    except OSError:
        return []
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def unmount_all_under(path: str) -> list[str]:
    """Unmount everything mounted at or below ``path`` (a directory about to be deleted, so
    that the deletion never reaches into a mounted file system); returns what was unmounted."""
    points = mounts_under(path)
    for point in points:
        unmount(point)
    return points


@contextmanager
def mounted(spec: MountSpec, parent_dir: str | None = None) -> Iterator[str]:
    """Mount ``spec`` on a fresh temporary directory; always unmount and remove it. Without
    ``parent_dir`` it goes in this process's scratch directory (``kiln.util.scratch``), so
    one a killed kiln left mounted is found and unmounted by the next sweep."""
    if parent_dir is None:
        parent_dir = process_scratch_dir()
    import tempfile  # start-up: a cached build mounts no view

    target = tempfile.mkdtemp(prefix="kiln-mnt-", dir=parent_dir)
    try:
        mount(spec, target)
        yield target
    finally:
        unmount(target)  # not mounted (the mount failed) is fine
        os.rmdir(target)


def overlay_works(scratch_dir: str) -> bool:
    """Can this process mount a writable overlay with its upper under ``scratch_dir``?

    The probe's overlay is mounted ``volatile`` (where the kernel takes it): its upper is
    thrown away, and a plain overlay's unmount syncs the whole upper file system (20-50 ms
    on a busy disk, paid by the first build in every fresh store)."""
    import tempfile  # start-up: only a fresh store probes

    probe = tempfile.mkdtemp(prefix="probe-", dir=scratch_dir)
    dirs = [os.path.join(probe, d) for d in ("lower", "upper", "work", "mnt")]
    try:
        for d in dirs:
            os.mkdir(d)
        options = supported_overlay_options()
        spec = MountSpec("overlay", "overlay", options, (dirs[0],), dirs[1], dirs[2])
        spec = spec.as_volatile()
        try:
            mount(spec, dirs[3])
            with open(os.path.join(dirs[3], "probe"), "w") as f:
                f.write("ok")
        except (Unavailable, OSError):
            return False
        return True
    finally:
        # whatever ended the probe (a Ctrl-C too): nothing stays mounted, nothing is left
        unmount(dirs[3])
        shutil.rmtree(probe, ignore_errors=True)


# overlay, new mount API -------------------------------------------------------


class _NoNewApi(Exception):
    pass


def _fs_error(fd: int) -> str:
    """The filesystem's own message for the last failure, if it left one."""
    try:
        msg = os.read(fd, 4096).decode(errors="replace")
    except OSError:
        return ""
    return msg[2:] if msg[:2] in ("e ", "w ") else msg


def _overlay_new_api(spec: MountSpec, target: str) -> None:
    try:
        fd = _sys(_SYS_FSOPEN, b"overlay", _FSOPEN_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):
            raise _NoNewApi from None
        raise Unavailable(f"cannot mount overlay: {exc.strerror}") from None
    try:

        def setstr(key: str, value: str | None, optional: bool = False) -> None:
            cmd = _FSCONFIG_SET_FLAG if value is None else _FSCONFIG_SET_STRING
            try:
                _sys(_SYS_FSCONFIG, fd, cmd, _b(key), _b(value), 0)
            except OSError as exc:
                if optional and exc.errno == errno.EINVAL:
                    _fs_error(fd)
                    return
                if key == "lowerdir+" and exc.errno == errno.EINVAL and not first_lower_done:
                    raise _NoNewApi from None
                detail = _fs_error(fd) or exc.strerror
                raise Unavailable(f"cannot mount overlay on {target}: {key}: {detail}") from None

        first_lower_done = False
        setstr("source", spec.source or "overlay")
        for lower in spec.lowers:
            setstr("lowerdir+", lower)
            first_lower_done = True
        if spec.upper:
            setstr("upperdir", spec.upper)
        if spec.work:
            setstr("workdir", spec.work)
        attrs = 0
        for opt in spec.options:
            if opt == "ro":
                attrs |= _MOUNT_ATTR_RDONLY
                continue
            key, eq, value = opt.partition("=")
            optional = opt in OVERLAY_OPTIONS or opt == VOLATILE
            setstr(key, value if eq else None, optional=optional)
        try:
            _sys(_SYS_FSCONFIG, fd, _FSCONFIG_CMD_CREATE, None, None, 0)
        except OSError as exc:
            detail = _fs_error(fd) or exc.strerror
            raise Unavailable(f"cannot mount overlay on {target}: {detail}") from None
        mfd = _sys(_SYS_FSMOUNT, fd, _FSMOUNT_CLOEXEC, attrs)
        try:
            _sys(
                _SYS_MOVE_MOUNT, mfd, b"", _AT_FDCWD, os.fsencode(target), _MOVE_MOUNT_F_EMPTY_PATH
            )
        except OSError as exc:
            raise Unavailable(f"cannot mount overlay on {target}: {exc.strerror}") from None
        finally:
            os.close(mfd)
    finally:
        os.close(fd)


# overlay, classic mount(2) ----------------------------------------------------


def _legacy_options(spec: MountSpec) -> MountSpec:
    ok = set(supported_overlay_options())
    opts = tuple(o for o in spec.options if o not in OVERLAY_OPTIONS or o in ok)
    return MountSpec(spec.type, spec.source, opts, spec.lowers, spec.upper, spec.work)


def _overlay_legacy(spec: MountSpec, target: str) -> None:
    spec = _legacy_options(spec)
    flags = MS_RDONLY if spec.readonly else 0
    data = spec.overlay_data()
    if len(data) < _PAGE:
        _classic_mount(spec.source, os.path.abspath(target), flags, data)
        return
    dirs = list(spec.lowers) + [d for d in (spec.upper, spec.work) if d]
    base = os.path.commonpath([os.path.abspath(d) for d in dirs])
    data = spec.overlay_data(relative_to=base)
    if len(data) >= _PAGE:
        raise Unavailable(
            f"cannot mount {len(spec.lowers)} layers: the overlay options are {len(data)} bytes "
            f"even with relative paths, over the kernel's limit of {_PAGE - 1}"
        )
    target = os.path.abspath(target)
    pid = os.fork()
    if pid == 0:  # child: chdir so the relative paths resolve, mount, report errno
        code = 0
        try:
            os.chdir(base)
            _classic_mount(spec.source, target, flags, data)
        except Unavailable as exc:
            code = min(getattr(exc, "errno", 1) or 1, 255)
        except BaseException:
            code = 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        reason = os.strerror(code) if 0 < code < 255 else "the mount helper failed"
        raise Unavailable(f"cannot mount overlay on {target}: {reason}")


def _classic_mount(source: str, target: str, flags: int, data: str) -> None:
    if _libc.mount(_b(source), _b(target), b"overlay", flags, _b(data)) != 0:
        err = ctypes.get_errno()
        exc = Unavailable(f"cannot mount overlay on {target}: {os.strerror(err)}")
        exc.errno = err
        raise exc


# bind (copy driver) -----------------------------------------------------------


def _bind(spec: MountSpec, target: str) -> None:
    src, dst = _b(spec.source), _b(target)
    if _libc.mount(src, dst, None, MS_BIND | MS_REC, None) != 0:
        err = ctypes.get_errno()
        raise Unavailable(f"cannot bind-mount {spec.source} on {target}: {os.strerror(err)}")
    if spec.readonly and _libc.mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None) != 0:
        err = ctypes.get_errno()
        unmount(target)
        raise Unavailable(f"cannot make {target} read-only: {os.strerror(err)}")
