"""The emulators the kernel's binfmt_misc has registered (QEMU user mode for foreign RUN).

Each file of ``/proc/sys/fs/binfmt_misc`` but ``register`` and ``status`` is one handler:
``enabled``, ``interpreter PATH``, ``flags: F...``, then ``offset``/``magic``/``mask`` or
``extension``.

``ensure_emulator(arch)`` makes sure a process of another architecture can run inside a
container: it uses a handler already registered for it, else registers the one Debian's
``qemu-user-static`` describes in ``binfmt.d`` (mounting binfmt_misc first if it is
not), always with the fix-binary flag ``F``. With ``F`` the kernel opens the interpreter
when the handler is registered, so it works inside a container's root, where the
interpreter's path does not exist. A native architecture needs none of this
(``needs_emulation``), so native steps never pay for it.
"""

from __future__ import annotations

import errno
import os
import platform as _host
import re

from kiln.errors import Unavailable
from kiln.oci.platform import normalize_arch
from kiln.runtime.linux import MS_NODEV, MS_NOEXEC, MS_NOSUID, mount
from kiln.util.lazy_dataclass import dataclass

BINFMT_DIR = "/proc/sys/fs/binfmt_misc"
# where systemd-binfmt (and Debian's qemu-user-static) keep handler descriptions, by priority
BINFMT_CONF_DIRS = ("/etc/binfmt.d", "/run/binfmt.d", "/usr/lib/binfmt.d")
# Go/OCI architecture names -> QEMU's (qemu-<name>, <name>-binfmt-P)
QEMU_ARCH = {
    "amd64": "x86_64", "386": "i386", "arm64": "aarch64", "arm": "arm",
    "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64",
    "mips64le": "mips64el", "mips64": "mips64", "mipsle": "mipsel", "mips": "mips",
    "loong64": "loongarch64",
}  # fmt: skip
# what the host's kernel runs without help, by host architecture
_NATIVE = {"amd64": frozenset({"amd64", "386"}), "arm64": frozenset({"arm64"})}
HOW_TO_ENABLE = (
    "install Debian's qemu-user-static (apt-get install qemu-user-static) and try again: "
    "kiln registers its binfmt_misc handler itself"
)


@dataclass(frozen=True)
class Emulator:
    """One binfmt_misc handler."""

    name: str  # the handler's name, e.g. qemu-aarch64
    interpreter: str  # e.g. /usr/libexec/qemu-binfmt/aarch64-binfmt-P
    enabled: bool
    flags: str  # F: the interpreter is opened at registration (works in any mount namespace)


def binfmt_mounted(directory: str = BINFMT_DIR) -> bool:
    return os.path.exists(os.path.join(directory, "status"))


def registered_emulators(directory: str = BINFMT_DIR) -> list[Emulator]:
    """Every handler registered, sorted by name; none when binfmt_misc is not mounted."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    found = []
    for name in names:
        if name in ("register", "status"):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        fields: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(" ")
            fields[key.rstrip(":")] = value.strip()
        enabled = bool(lines) and lines[0].strip() == "enabled"
        found.append(
            Emulator(name, fields.get("interpreter", ""), enabled, fields.get("flags", ""))
        )
    return found


def host_arch() -> str:
    """This machine's OCI architecture: ``uname -m`` named as platforms name it (x86_64 is
    amd64, aarch64 arm64, armv7l arm), as ``Platform.host()`` does."""
    return normalize_arch(_host.machine())[0]


def needs_emulation(arch: str) -> bool:
    """True when processes of ``arch`` cannot run on this kernel as is. Both sides are OCI
    names (``normalize_arch``): "aarch64" is "arm64", and an armv7l host runs "arm"."""
    arch, host = normalize_arch(arch)[0], host_arch()
    return arch not in _NATIVE.get(host, frozenset({host}))


def _runs(emulator: Emulator, qemu_arch: str) -> bool:
    """Is this handler the one for ``qemu_arch`` (by its name or its interpreter's)?"""
    pattern = re.compile(rf"(^|[-_]){re.escape(qemu_arch)}([-.]|$)")
    base = os.path.basename(emulator.interpreter)
    return emulator.name == f"qemu-{qemu_arch}" or bool(pattern.search(base))


def find_emulator(arch: str, directory: str = BINFMT_DIR) -> Emulator | None:
    """The registered handler for ``arch`` (an OCI architecture), if any."""
    qemu_arch = QEMU_ARCH.get(arch, arch)
    for emulator in registered_emulators(directory):
        if _runs(emulator, qemu_arch):
            return emulator
    return None


def handler_line(arch: str, conf_dirs: tuple[str, ...] = BINFMT_CONF_DIRS) -> str | None:
    """The ``:name:type:offset:magic:mask:interpreter:flags`` line a binfmt.d file gives for
    ``arch``'s QEMU (first directory wins), with ``F`` added; None if none is installed."""
    qemu_arch = QEMU_ARCH.get(arch, arch)
    for directory in conf_dirs:
        path = os.path.join(directory, f"qemu-{qemu_arch}.conf")
        try:
            with open(path, encoding="utf-8") as f:
                lines = [ln.strip() for ln in f if ln.strip() and ln.strip()[0] not in "#;"]
        except OSError:
            continue
        for line in lines:
            fields = line[1:].split(line[0])
            if len(fields) != 7 or not os.path.isfile(fields[5]):
                continue
            if "F" not in fields[6]:
                fields[6] += "F"
            return line[0] + line[0].join(fields)
    return None


def _mount_binfmt(directory: str) -> None:
    try:
        mount("binfmt_misc", directory, "binfmt_misc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as exc:
        raise Unavailable(
            f"binfmt_misc is not mounted and mounting it on {directory} failed "
            f"({os.strerror(exc.errno or 0)}): mount it as root "
            f"(mount -t binfmt_misc binfmt_misc {directory})"
        ) from None


def register(line: str, directory: str = BINFMT_DIR) -> None:
    """Write a handler line to binfmt_misc's ``register``; one registered meanwhile is fine."""
    try:
        fd = os.open(os.path.join(directory, "register"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return  # another process registered it first
        raise Unavailable(
            f"registering the binfmt_misc handler {line.split(line[0])[1]} failed "
            f"({os.strerror(exc.errno or 0)}): registering needs root"
        ) from None


def ensure_emulator(
    arch: str,
    directory: str = BINFMT_DIR,
    conf_dirs: tuple[str, ...] = BINFMT_CONF_DIRS,
) -> Emulator:
    """A handler that runs ``arch`` binaries in any mount namespace, registered if need be.

    Raises ``Unavailable`` saying what is missing and how to enable it."""
    qemu_arch = QEMU_ARCH.get(arch, arch)
    if not binfmt_mounted(directory):
        _mount_binfmt(directory)
    found = find_emulator(arch, directory)
    if found is None:
        line = handler_line(arch, conf_dirs)
        if line is None:
            raise Unavailable(
                f"no emulator for {arch}: binfmt_misc has no handler for {qemu_arch} "
                f"and none is installed: {HOW_TO_ENABLE}"
            )
        register(line, directory)
        found = find_emulator(arch, directory)
        if found is None:
            raise Unavailable(f"the binfmt_misc handler for {qemu_arch} did not register")
    if not found.enabled:
        raise Unavailable(
            f"the binfmt_misc handler {found.name} for {arch} is disabled: enable it "
            f"(echo 1 > {os.path.join(directory, found.name)})"
        )
    if "F" not in found.flags:
        raise Unavailable(
            f"the binfmt_misc handler {found.name} for {arch} has no fix-binary (F) flag, so "
            f"its interpreter {found.interpreter} cannot be found inside a container: remove it "
            f"(echo -1 > {os.path.join(directory, found.name)}) and kiln registers "
            "qemu-user-static's with F, or register yours again with F"
        )
    return found


__all__ = [
    "BINFMT_DIR",
    "HOW_TO_ENABLE",
    "QEMU_ARCH",
    "Emulator",
    "binfmt_mounted",
    "ensure_emulator",
    "find_emulator",
    "handler_line",
    "host_arch",
    "needs_emulation",
    "register",
    "registered_emulators",
]
