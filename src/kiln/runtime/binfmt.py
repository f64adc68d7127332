"""The emulators the kernel's binfmt_misc has registered (QEMU user mode for foreign RUN).

Each file of ``/proc/sys/fs/binfmt_misc`` but ``register`` and ``status`` is one handler:
``enabled``, ``interpreter PATH``, ``flags: F...``, then ``offset``/``magic``/``mask`` or
``extension``. Nothing here registers anything; it only reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

BINFMT_DIR = "/proc/sys/fs/binfmt_misc"


@dataclass(frozen=True)
class Emulator:
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


__all__ = ["BINFMT_DIR", "Emulator", "binfmt_mounted", "registered_emulators"]
