"""Build the OCI runtime-spec ``config.json`` for one RUN."""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING, Any

from kiln.errors import InvalidArgument
from kiln.oci.config import DEFAULT_PATH
from kiln.util.rootless import is_rootless

from . import caps as capabilities
from .options import RLIM_INFINITY, Mount, RunOptions, Ulimit, parse_ulimit, shares_namespace
from .seccomp import load_profile, to_linux_seccomp
from .users import ResolvedUser

if TYPE_CHECKING:
    import logging


def _log() -> logging.Logger:
    import logging  # here: a RUN that warns of nothing does not import logging (~18 M instructions)

    return logging.getLogger("kiln.runtime")


OCI_VERSION = "1.0.2"
# What buildah asks for when no --ulimit says otherwise (clamped to what kiln has).
DEFAULT_RLIMITS = {"RLIMIT_NOFILE": 1048576, "RLIMIT_NPROC": 1048576}

# podman's defaults.
MASKED_PATHS = [
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/proc/interrupts",
    "/sys/firmware", "/sys/fs/selinux", "/sys/dev/block", "/sys/devices/virtual/powercap",
]  # fmt: skip
READONLY_PATHS = [
    "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
]  # fmt: skip


def _host_hard_limit(name: str) -> int:
    hard = resource.getrlimit(getattr(resource, name))[1]
    return RLIM_INFINITY if hard == resource.RLIM_INFINITY else hard


def clamp(limit: Ulimit) -> Ulimit:
    """Never ask for more than kiln's own hard limit: the runtime cannot raise it."""
    ceiling = _host_hard_limit(limit.name)
    hard = min(limit.hard, ceiling)
    return Ulimit(limit.name, min(limit.soft, hard), hard)


def rlimits(opts: RunOptions) -> list[Ulimit]:
    """The clamped rlimits for a run: defaults, overridden by --ulimit."""
    wanted = {name: Ulimit(name, value, value) for name, value in DEFAULT_RLIMITS.items()}
    for spec in opts.ulimits:
        limit = parse_ulimit(spec)
        wanted[limit.name] = limit
    return [clamp(limit) for limit in wanted.values()]


def process_env(opts: RunOptions, user: ResolvedUser) -> list[str]:
    env = list(opts.env)
    names = {item.partition("=")[0] for item in env}
    if "PATH" not in names:
        env.insert(0, f"PATH={DEFAULT_PATH}")
    if "HOME" not in names:
        env.append(f"HOME={user.home or '/'}")
    return env


def _system_mounts(opts: RunOptions) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={opts.shm_size}"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
    ]  # fmt: skip
    if opts.network == "host":
        # Sharing the host's network namespace: bind the host's /sys (recursively read-only)
        # instead of mounting a fresh sysfs, as buildah and podman do.
        mounts.append({"destination": "/sys", "type": "bind", "source": "/sys",
                       "options": ["rbind", "nosuid", "noexec", "nodev", "rro"]})  # fmt: skip
    else:
        mounts += [
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ]  # fmt: skip
    return mounts


def user_mount(mount: Mount) -> dict[str, Any]:
    """One ``Mount`` as an OCI mount entry."""
    if mount.type in ("bind", "cache"):
        if not mount.source:
            raise InvalidArgument(
                f"mount on {mount.destination}: a {mount.type} mount needs a host source"
            )
        opts = [o for o in mount.options if "=" not in o and o != "U"]  # U: volume_options
        if "bind" not in opts and "rbind" not in opts:
            opts.append("rbind")
        if "ro" not in opts and "rw" not in opts:
            opts.append("rw")
        return {"destination": mount.destination, "type": "bind", "source": mount.source,
                "options": opts}  # fmt: skip
    if mount.type == "tmpfs":
        opts = list(mount.options) or []
        for default in ("nosuid", "nodev"):
            if default not in opts:
                opts.append(default)
        return {"destination": mount.destination, "type": "tmpfs", "source": "tmpfs",
                "options": opts}  # fmt: skip
    if mount.type == "overlay":  # --volume ...:O, its directories made (volume_options)
        return {"destination": mount.destination, "type": "overlay", "source": "overlay",
                "options": [o for o in mount.options if o != "U"]}  # fmt: skip
    raise InvalidArgument(
        f"mount on {mount.destination}: type {mount.type!r} is not supported (bind, tmpfs, cache)"
    )


def mounts(opts: RunOptions, etc_files: dict[str, str]) -> list[dict[str, Any]]:
    result = _system_mounts(opts)
    user_dests = {m.destination.rstrip("/") or "/" for m in opts.mounts}
    for dest, source in etc_files.items():
        if dest not in user_dests:
            result.append({"destination": dest, "type": "bind", "source": source,
                           "options": ["bind", "rprivate", "nosuid", "nodev", "noexec"]})  # fmt: skip
    result += [user_mount(m) for m in opts.mounts]
    return result


def _resources(opts: RunOptions, devices: list[Any]) -> dict[str, Any]:
    res: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if devices:
        from .devices import cgroup_rules  # start-up: only --device needs it

        res["devices"] += cgroup_rules(devices)
    memory: dict[str, int] = {}
    if opts.memory is not None:
        memory["limit"] = opts.memory
    if opts.memory_swap is not None:
        memory["swap"] = opts.memory_swap
    if memory:
        res["memory"] = memory
    cpu: dict[str, Any] = {}
    for key, value in (("shares", opts.cpu_shares), ("period", opts.cpu_period),
                       ("quota", opts.cpu_quota)):  # fmt: skip
        if value is not None:
            cpu[key] = value
    if opts.cpuset_cpus:
        cpu["cpus"] = opts.cpuset_cpus
    if opts.cpuset_mems:
        cpu["mems"] = opts.cpuset_mems
    if cpu:
        res["cpu"] = cpu
    if (memory or cpu) and is_rootless():
        # runc in kiln's user namespace has no cgroup it may write to: as podman does on
        # cgroups v1 rootless, the limits are left out rather than failing the run
        _log().warning("resource limits (--memory, --cpu-*) are ignored by rootless kiln")
        res.pop("memory", None)
        res.pop("cpu", None)
    return res


def namespaces(opts: RunOptions) -> list[dict[str, str]]:
    """A new namespace of each kind but those shared with the host (``--network host``,
    ``--pid host``...) or joined by path (``--ipc /proc/PID/ns/ipc``)."""
    spaces: list[dict[str, str]] = []
    for kind in ("pid", "ipc", "uts"):
        given = getattr(opts, kind)
        if given != "host":
            joined = given.startswith("/")
            spaces.append({"type": kind, "path": given} if joined else {"type": kind})
    spaces.append({"type": "mount"})
    if opts.network != "host":
        # "none" and (for now) "private": a fresh network namespace with only loopback.
        spaces.append({"type": "network"})
    return spaces


_DEFAULT_SECCOMP: dict[tuple[str, ...], dict[str, Any] | None] = {}


def _seccomp(setting: str, caps: tuple[str, ...]) -> dict[str, Any] | None:
    """``linux.seccomp`` for ``setting`` and these capabilities. kiln's own profile is
    converted once per capability set in a process (a build's every RUN asks again, and
    the conversion is ~0.5 ms); a user's profile file is read each time (it may change)."""
    if setting not in ("", "default"):
        profile = load_profile(setting)
        return None if profile is None else to_linux_seccomp(profile, list(caps))
    if caps not in _DEFAULT_SECCOMP:
        profile = load_profile(setting)
        _DEFAULT_SECCOMP[caps] = None if profile is None else to_linux_seccomp(profile, list(caps))
    return _DEFAULT_SECCOMP[caps]


def build_spec(
    opts: RunOptions, rootfs: str, user: ResolvedUser, etc_files: dict[str, str]
) -> dict[str, Any]:
    """The config.json for running ``opts.args`` in ``rootfs``."""
    opts.validate()
    cap_list = capabilities.effective_set(opts.cap_add, opts.cap_drop)
    # As docker and podman: a non-root user keeps only the bounding set.
    active = cap_list if user.uid == 0 else []
    process: dict[str, Any] = {
        "terminal": bool(opts.terminal),
        "user": {"uid": user.uid, "gid": user.gid},
        "args": list(opts.args),
        "env": process_env(opts, user),
        "cwd": opts.cwd or "/",
        "capabilities": {"bounding": cap_list, "effective": active, "permitted": active},
        "rlimits": [{"type": r.name, "hard": r.hard, "soft": r.soft} for r in rlimits(opts)],
        "noNewPrivileges": bool(opts.no_new_privileges),
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = list(user.additional_gids)
    devices: list[Any] = []
    if opts.devices:
        from .devices import host_devices  # start-up: only --device needs it

        devices = host_devices(opts.devices)
    linux: dict[str, Any] = {
        "namespaces": namespaces(opts),
        "resources": _resources(opts, devices),
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if devices:
        from .devices import spec_devices  # start-up: only --device needs it

        linux["devices"] = spec_devices(devices)
    seccomp = _seccomp(opts.seccomp, tuple(cap_list))
    if seccomp is not None:
        linux["seccomp"] = seccomp
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": bool(opts.readonly_rootfs)},
        "mounts": mounts(opts, etc_files),
        "linux": linux,
    }
    if opts.hostname and not shares_namespace(
        opts.uts
    ):  # another UTS namespace's name is not the run's
        spec["hostname"] = opts.hostname
    return spec
