"""Linux capability names and the default set a RUN gets, adjusted by --cap-add/--cap-drop."""

from __future__ import annotations

from collections.abc import Sequence

from kiln.errors import InvalidArgument

# Numbered as in <linux/capability.h>.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
    "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
CAP_NUMBERS = {name: i for i, name in enumerate(CAPABILITIES)}

# containers-common's default_capabilities (containers.conf), which buildah uses.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
    "CAP_SYS_CHROOT",
)  # fmt: skip


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return min(int(f.read().strip()), len(CAPABILITIES) - 1)
    except (OSError, ValueError):
        return len(CAPABILITIES) - 1


def bounding_set() -> list[str]:
    """The capabilities kiln itself may hand on (its bounding set): what ``ALL`` means.

    A sandboxed host can lack some (here CAP_SYS_RESOURCE); asking runc for a
    capability outside the bounding set fails the whole RUN with "unable to apply caps".
    """
    known = CAPABILITIES[: last_cap() + 1]
    try:
        with open("/proc/self/status") as f:
            line = next(ln for ln in f if ln.startswith("CapBnd:"))
        mask = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError, IndexError):
        return list(known)
    return [name for number, name in enumerate(known) if mask >> number & 1]


def normalize(name: str, flag: str) -> str:
    """``chown``, ``CAP_CHOWN``, ``cap_chown`` -> ``CAP_CHOWN``; ``ALL`` stays ``ALL``."""
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in CAP_NUMBERS:
        raise InvalidArgument(
            f"{flag} {name!r}: unknown capability; use a name such as CHOWN or NET_ADMIN, or ALL"
        )
    return upper


def effective_set(cap_add: Sequence[str], cap_drop: Sequence[str]) -> list[str]:
    """The default set with additions and drops applied (drops win, as in podman)."""
    all_caps = bounding_set()
    adds = [normalize(c, "--cap-add") for c in cap_add]
    drops = [normalize(c, "--cap-drop") for c in cap_drop]
    caps = list(all_caps) if "ALL" in adds else list(DEFAULT_CAPABILITIES)
    for cap in adds:
        if cap != "ALL" and cap not in caps:
            caps.append(cap)
    if "ALL" in drops:
        caps = [c for c in adds if c != "ALL"] if "ALL" not in adds else []
    caps = [c for c in caps if c not in drops]
    return sorted(set(caps), key=CAP_NUMBERS.__getitem__)
