"""Whether this kiln runs for an unprivileged user, and which one.

A non-root user's kiln moves into a user namespace of its own (``kiln.runtime.userns``)
where it is uid 0. Inside, ``os.geteuid()`` says 0, so every default that depends on who
runs kiln (the store under ``$XDG_DATA_HOME``, the runtime and auth directories under
``$XDG_RUNTIME_DIR`` or the temporary directory) asks this module instead. The namespace's
creator leaves its real uid in ``_KILN_ROOTLESS_UID`` (as podman leaves
``_CONTAINERS_ROOTLESS_UID``), inherited by everything kiln starts there.
"""

from __future__ import annotations

import os

ROOTLESS_UID_ENV = "_KILN_ROOTLESS_UID"


def rootless_uid() -> int | None:
    """The unprivileged user's uid when kiln runs rootless (in its own user namespace or
    not yet there); ``None`` for root."""
    value = os.environ.get(ROOTLESS_UID_ENV, "")
    if value.isdigit():
        return int(value)
    uid = os.geteuid()
    return uid if uid != 0 else None


def is_rootless() -> bool:
    return rootless_uid() is not None


def in_kiln_userns() -> bool:
    """True inside the user namespace kiln made for an unprivileged user."""
    return os.environ.get(ROOTLESS_UID_ENV, "").isdigit() and os.geteuid() == 0


def runtime_base() -> str:
    """Where per-run state lives: ``/run`` for root; for a user ``$XDG_RUNTIME_DIR``, else
    ``<tmp>/kiln-run-<uid>`` (as podman's ``/tmp/podman-run-<uid>``)."""
    uid = rootless_uid()
    if uid is None:
        return "/run"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return xdg
    from kiln.util.scratch import system_tmpdir  # start-up: only a rootless process asks

    return os.path.join(system_tmpdir(), f"kiln-run-{uid}")


def in_user_namespace() -> bool:
    """True in any user namespace but the initial one (kiln's own, or a container's with
    ``--userns``): there overlayfs keeps its xattrs as ``user.overlay.*``."""
    try:
        with open("/proc/self/uid_map", encoding="ascii") as f:
            lines = f.read().split("\n")
    except OSError:
        return False
    return [line.split() for line in lines if line.strip()] != [["0", "0", "4294967295"]]
