"""Before starting a container: can its command be executed at all?

An OCI runtime that cannot exec the command prints its own error line on the stderr it
shares with the process, so kiln looks first, in the rootfs (symlinks resolved in-root), and
reports a missing or non-executable command as one ``ProcessFailed`` worded as podman and
runc word it (``exec: "/x": stat /x: no such file or directory``), exit code 127 (not
found) or 126 (not executable). Paths under a mount are left to the runtime to judge.
"""

from __future__ import annotations

import posixpath
import stat

from kiln.errors import ProcessFailed
from kiln.oci.config import DEFAULT_PATH
from kiln.util.inroot import InRoot

from .options import RunOptions

EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
# what the runtime mounts over the rootfs besides the caller's mounts
_RUNTIME_MOUNTS = ("/proc", "/dev", "/sys", "/run", "/etc/hosts", "/etc/resolv.conf",
                   "/etc/hostname")  # fmt: skip


def exec_failed(name: str, problem: str, code: int) -> ProcessFailed:
    """The error for a command the runtime could not start (``problem``: runc's words)."""
    return ProcessFailed(f'running container: exec: "{name}": {problem}', code)


def check_command(opts: RunOptions, rootfs: str) -> None:
    """Raise ``ProcessFailed`` (127/126) when ``opts.args[0]`` cannot run in ``rootfs``."""
    name = opts.args[0] if opts.args else ""
    if not name:
        return
    mounted = [*_RUNTIME_MOUNTS, *(m.destination for m in opts.mounts)]
    with InRoot.opened(rootfs) as root:
        if "/" in name:
            path = posixpath.normpath(posixpath.join(opts.cwd or "/", name))
            if _under(path, mounted):
                return
            kind = _kind(root, path)
            if kind is None:
                raise exec_failed(name, f"stat {path}: no such file or directory", EXIT_NOT_FOUND)
            if kind == "not executable":
                raise exec_failed(name, "permission denied", EXIT_NOT_EXECUTABLE)
            return
        for directory in _search_path(opts).split(":"):
            directory = posixpath.normpath(posixpath.join(opts.cwd or "/", directory or "."))
            path = posixpath.join(directory, name)
            if _under(path, mounted) or _kind(root, path) == "executable":
                return
    raise exec_failed(name, "executable file not found in $PATH", EXIT_NOT_FOUND)


def _search_path(opts: RunOptions) -> str:
    value = None
    for item in opts.env:
        key, sep, rest = item.partition("=")
        if sep and key == "PATH":
            value = rest
    return DEFAULT_PATH if value is None else value


def _under(path: str, mounts: list[str]) -> bool:
    for dest in mounts:
        dest = posixpath.normpath("/" + dest.lstrip("/"))
        if dest == "/" or path == dest or path.startswith(dest + "/"):
            return True
    return False


def _kind(root: InRoot, path: str) -> str | None:
    """None (missing), "executable" or "not executable" (a directory, no x bit, ...)."""
    try:
        mode = root.stat(path, follow=True).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return "executable"  # a loop or an odd file: let the runtime say
    if stat.S_ISREG(mode) and mode & 0o111:
        return "executable"
    return "not executable"
