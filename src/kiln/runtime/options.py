"""What one RUN asks for: ``RunSettings`` (shared by a build's RUN steps, ``kiln run`` and
``kiln from``), ``RunOptions`` (the settings plus one process), ``Mount`` and the parsers
for their flag strings."""

from __future__ import annotations

import os
import posixpath
import re
import threading
from collections.abc import Callable
from dataclasses import field, fields
from typing import IO, Any, NamedTuple, Self

from kiln.errors import InvalidArgument
from kiln.util.choices import Isolation, NetworkMode
from kiln.util.lazy_dataclass import dataclass

StdStream = IO[bytes] | IO[str] | int | None

RLIM_INFINITY = 2**64 - 1
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
MIN_MEMORY = 6 * 1024 * 1024  # the least memory limit dockerd and podman accept


@dataclass(frozen=True)
class Mount:
    """One mount inside the container. ``cache`` mounts are mapped to binds by the caller."""

    type: str
    source: str
    destination: str
    options: tuple[str, ...] = ()

    @property
    def readonly(self) -> bool:
        return "ro" in self.options or "readonly" in self.options


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How every process of a build's RUN steps, or of one ``kiln run``, is run: network,
    isolation, /etc/hosts and resolv.conf, capabilities and resources. A build holds one
    (``BuildOptions.run``), ``kiln run`` and ``kiln from`` fill one from the same flags
    (``kiln.cli.commands._run_flags``), and ``RunOptions`` is one plus the process.

    Lists given are kept as tuples; ``network``, ``isolation`` (their other spellings
    accepted), ``ulimits`` and ``add_hosts`` are checked here, so a bad value is refused
    before anything runs.
    """

    network: NetworkMode = NetworkMode.HOST
    isolation: Isolation = Isolation.OCI
    runtime: str = "runc"  # the OCI runtime binary (isolation oci)
    add_hosts: tuple[str, ...] = ()  # "name:ip" lines for /etc/hosts
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()  # ["."]: no search domains
    dns_options: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    ulimits: tuple[str, ...] = ()  # "nofile=1024:2048"
    memory: int | None = None  # bytes
    memory_swap: int | None = None  # bytes, -1 unlimited
    cpu_shares: int | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    shm_size: int = DEFAULT_SHM_SIZE  # bytes of /dev/shm
    devices: tuple[str, ...] = ()  # "HOST[:CONTAINER][:rwm]" (``kiln.runtime.devices``)
    seccomp: str = "default"  # kiln's profile, "unconfined" or a profile file's path
    no_new_privileges: bool = False
    # the IPC, PID and UTS namespaces: a new one ("", or "private": said so, it wins over
    # kiln from's), "host", or the path of one to join (/proc/PID/ns/ipc)
    ipc: str = ""
    pid: str = ""
    uts: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "network", NetworkMode.parse(self.network))
        object.__setattr__(self, "isolation", Isolation.parse(self.isolation))
        for f in fields(RunSettings):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        for item in self.ulimits:
            parse_ulimit(item)
        for item in self.add_hosts:
            parse_add_host(item)
        for kind in NAMESPACE_FLAGS:
            object.__setattr__(self, kind, parse_namespace(kind, getattr(self, kind)))
        for item in self.devices:
            parse_device(item)

    @classmethod
    def given(cls, **values: Any) -> Self:
        """The settings with only the values given (``None``: the default), as a flag
        that was not passed or an API parameter that was left out."""
        return cls(**{k: v for k, v in values.items() if v is not None})

    def shares_namespace(self, kind: str) -> bool:
        """Whether the ``kind`` namespace (ipc, pid, uts) is the host's or one joined."""
        return shares_namespace(getattr(self, kind))

    def settings(self) -> RunSettings:
        """Just the settings (of a ``RunOptions``: without the process)."""
        return RunSettings(**{f.name: getattr(self, f.name) for f in fields(RunSettings)})

    def to_json(self) -> dict[str, Any]:
        """The values that differ from the defaults (a working container keeps these)."""
        out: dict[str, Any] = {}
        for f in fields(RunSettings):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_json(cls, obj: Any) -> RunSettings:
        """Settings kept by ``to_json`` (names this kiln does not know are left out)."""
        known = {f.name for f in fields(RunSettings)}
        return RunSettings(**{k: v for k, v in dict(obj or {}).items() if k in known})

    def over(self, base: RunSettings) -> RunSettings:
        """``base`` with the values of these settings that are not the defaults: ``kiln
        run``'s flags over the ones its container was made with (``kiln from``)."""
        mine = self.to_json()
        return RunSettings(
            **{
                f.name: getattr(self if f.name in mine else base, f.name)
                for f in fields(RunSettings)
            }
        )


@dataclass(frozen=True, kw_only=True)
class RunOptions(RunSettings):
    """One process to run: the ``RunSettings`` and the command, its environment, user,
    mounts and standard streams. ``RunOptions.of(settings, args=...)`` joins them."""

    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    user: str = ""
    hostname: str = ""
    no_hosts: bool = False  # the image's /etc/hosts, not kiln's (buildah run --no-hosts)
    mounts: list[Mount] = field(default_factory=list)
    terminal: bool = False
    readonly_rootfs: bool = False
    stdin: StdStream = None
    stdout: StdStream = None
    stderr: StdStream = None
    cancel: threading.Event | None = None  # set -> SIGTERM, SIGKILL after cancel_grace, return
    cancel_grace: float = 2.0
    # called once the process has been started, while it runs: the caller's work that need
    # not wait for it (a build loads its commit code) overlaps the runtime's start-up
    while_running: Callable[[], None] | None = None

    @classmethod
    def of(cls, settings: RunSettings, **process: Any) -> RunOptions:
        """``settings`` with the process fields (``args=``, ``env=``, ``mounts=``...)."""
        values = {f.name: getattr(settings, f.name) for f in fields(RunSettings)}
        return cls(**{**values, **process})

    def streams_without_descriptor(self) -> list[str]:
        """The standard streams (``stdin``...) a process cannot be given as they are."""
        return [n for n in ("stdin", "stdout", "stderr") if not has_descriptor(getattr(self, n))]

    def validate(self) -> None:
        """Refuse option values no backend can honour, naming the flag."""
        if not self.args:
            raise InvalidArgument("no command given to run: pass the command and its arguments")
        if not self.cwd.startswith("/"):
            raise InvalidArgument(f"--workingdir {self.cwd!r} must be an absolute path")
        for item in self.env:
            if "=" not in item or item.startswith("="):
                raise InvalidArgument(f"--env {item!r} must have the form NAME=VALUE")
        if shares_namespace(self.uts) and self.hostname:
            raise InvalidArgument(
                f"--hostname needs a UTS namespace of the run's own, not --uts {self.uts}"
            )
        check_namespace_paths(self)


def has_descriptor(stream: object) -> bool:
    """Whether a process can be given ``stream`` as it is: None, a descriptor, or a file."""
    if stream is None or isinstance(stream, int):
        return True
    try:
        stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    return True


NAMESPACE_FLAGS = ("ipc", "pid", "uts")  # the namespaces ``--ipc``, ``--pid``, ``--uts`` choose


def parse_namespace(kind: str, value: str) -> str:
    """``--ipc``/``--pid``/``--uts``: ``private``, ``host`` or a path, checked."""
    if value in ("", "private", "host") or value.startswith("/"):
        return value
    raise InvalidArgument(
        f"--{kind} {value!r} is invalid: use private, host or the path of the namespace to "
        f"join (/proc/PID/ns/{kind})"
    )


def shares_namespace(value: str) -> bool:
    """Whether a namespace setting is the host's or one joined: not the run's own."""
    return value == "host" or value.startswith("/")


def check_namespace_paths(settings: RunSettings) -> None:
    """Refuse a namespace to join (``--ipc PATH``...) whose path is not there."""
    for kind in NAMESPACE_FLAGS:
        path = getattr(settings, kind)
        if path.startswith("/") and not os.path.exists(path):
            raise InvalidArgument(f"--{kind} {path}: no such namespace file")


def parse_security_opts(opts: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``--security-opt`` values -> the ``RunSettings`` fields they set: ``seccomp=`` (a
    profile's path made absolute: a working container's later runs start elsewhere) and
    ``no-new-privileges[=BOOL]``; ``label=`` and ``apparmor=`` are accepted and do nothing
    (kiln runs without SELinux labels or AppArmor profiles), anything else is refused."""
    out: dict[str, Any] = {}
    for opt in opts:
        key, _, value = opt.partition("=")
        if key == "seccomp" and value:
            keep = value in ("default", "unconfined")
            out["seccomp"] = value if keep else os.path.abspath(value)
        elif key in ("no-new-privileges", "no_new_privileges"):
            out["no_new_privileges"] = value.lower() not in ("false", "0")
        elif key in ("label", "apparmor") and value:
            continue
        else:
            raise InvalidArgument(
                f"--security-opt {opt!r} is not supported: use seccomp=unconfined|PROFILE, "
                "no-new-privileges, label=... or apparmor=..."
            )
    return out


# -- devices -----------------------------------------------------------------------------------


def _is_permissions(text: str) -> bool:
    return bool(text) and set(text) <= set("rwm") and len(set(text)) == len(text)


def parse_device(spec: str) -> tuple[str, str, str]:
    """``--device`` -> (host path, container path, permissions), spelled and checked as
    buildah's (``kiln.runtime.devices`` looks at the host); no look at the host."""
    parts = spec.split(":")
    if not parts[0] or len(parts) > 3:
        raise InvalidArgument(
            f"--device {spec!r} is invalid: use HOST-DEVICE[:CONTAINER-PATH][:PERMISSIONS]"
        )
    source, dest, permissions = parts[0], "", "rwm"
    if len(parts) == 3:
        dest, permissions = parts[1], parts[2]
    elif len(parts) == 2:
        if _is_permissions(parts[1]):
            permissions = parts[1]
        else:
            dest = parts[1]
    if not _is_permissions(permissions):
        raise InvalidArgument(
            f"--device {spec!r}: permissions {permissions!r} must be letters of rwm"
        )
    if not source.startswith("/"):
        raise InvalidArgument(f"--device {spec!r}: the host device must be an absolute path")
    dest = dest or source
    if not dest.startswith("/"):
        raise InvalidArgument(f"--device {spec!r}: the container path must be absolute")
    dest = posixpath.normpath(dest)
    if dest in ("/", "/dev"):
        raise InvalidArgument(f"--device {spec!r}: {dest} cannot be a device")
    return source, dest, permissions


# -- volumes and mounts -------------------------------------------------------------------------

# buildah's volume options (containers/common ValidateVolumeOpts), at most one of each group
_VOLUME_OPTION_GROUPS = (
    ("ro", "rw"), ("nosuid", "suid"), ("nodev", "dev"), ("noexec", "exec"), ("bind", "rbind"),
    ("private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"),
    ("z", "Z", "O"), ("copy", "nocopy"), ("U",),
)  # fmt: skip
_VOLUME_GROUP = {o: group for group in _VOLUME_OPTION_GROUPS for o in group}
# accepted and left out of the mount: SELinux relabelling (kiln runs without SELinux labels),
# a named volume's copy-up (a bind has none) and macOS's consistency words, which docker
# and buildah drop too
_VOLUME_NO_OPS = {"z", "Z", "O", "copy", "nocopy", "cached", "delegated"}
# what buildah does and kiln does not: refused rather than bound in a way the user did not ask
_OVERLAY_FLAGS = ("nosuid", "nodev", "noexec")
_VOLUME_UNSUPPORTED = {
    "idmap": "idmapped mounts are not supported by kiln",
}  # fmt: skip


def parse_volume(spec: str) -> Mount:
    """``--volume host:ctr[:opts]`` -> a bind ``Mount``, with buildah's options: one of each
    group (``ro``/``rw``, ``[r]private``/``[r]shared``/...), SELinux labels and the no-ops
    accepted and dropped, ``idmap`` refused; with ``O`` an ``overlay`` ``Mount``
    keeping ``nosuid``, ``nodev`` and ``noexec``; ``U`` kept: ``kiln.runtime.volume_options``
    makes the overlay's directories and chowns the host path before the run."""
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"--volume {spec!r} is invalid: use HOST-DIR:CONTAINER-DIR[:OPTIONS]")
    source, dest = parts[0], parts[1]
    opts = [o for o in parts[2].split(",") if o] if len(parts) == 3 else []
    seen: dict[tuple[str, ...], str] = {}
    for o in opts:
        if o in _VOLUME_UNSUPPORTED:
            raise InvalidArgument(f"--volume {spec!r}: option {o!r}: {_VOLUME_UNSUPPORTED[o]}")
        if o not in _VOLUME_GROUP and o not in _VOLUME_NO_OPS:
            raise InvalidArgument(f"--volume {spec!r}: unknown option {o!r}")
        group = _VOLUME_GROUP.get(o)
        if group is not None and group in seen:
            raise InvalidArgument(
                f"--volume {spec!r}: {seen[group]!r} and {o!r} conflict (give only one of "
                + ", ".join(group)
                + ")"
            )
        if group is not None:
            seen[group] = o
    if not source.startswith("/"):
        raise InvalidArgument(f"--volume {spec!r}: the host path must be absolute")
    _check_destination("--volume", spec, dest)
    kept = [o for o in opts if o not in _VOLUME_NO_OPS]
    if "O" in opts:  # the run's writes go to an upper of its own: no ro/rw, no bind
        flags = tuple(o for o in kept if o in (*_OVERLAY_FLAGS, "U"))
        return Mount("overlay", source, dest, flags)
    if "ro" not in kept and "rw" not in kept:
        kept.append("rw")
    if "bind" not in kept and "rbind" not in kept:
        kept.append("rbind")
    return Mount("bind", source, dest, tuple(kept))


def parse_mount(spec: str) -> Mount:
    """``--mount type=bind|tmpfs|cache,src=..,dst=..,ro,...`` -> ``Mount``.

    Cache mounts keep their fields (``id=``, ``sharing=``, ``mode=``...) as options; the caller
    turns them into a bind of a host directory before running.
    """
    fields: dict[str, str] = {}
    flags: list[str] = []
    for raw in spec.split(","):
        if not raw:
            continue
        key, sep, value = raw.partition("=")
        key = key.strip().lower()
        if not sep:
            flags.append(key)
        elif key in fields:
            raise InvalidArgument(f"--mount {spec!r}: {key!r} given twice")
        else:
            fields[key] = value
    mtype = fields.pop("type", "")
    if mtype not in ("bind", "tmpfs", "cache"):
        raise InvalidArgument(f"--mount {spec!r}: type must be bind, tmpfs or cache")
    dest = ""
    for key in ("destination", "dst", "target"):
        if key in fields:
            dest = fields.pop(key)
    if not dest:
        raise InvalidArgument(f"--mount {spec!r}: a destination (dst=, target=) is required")
    _check_destination("--mount", spec, dest)
    source = ""
    for key in ("source", "src"):
        if key in fields:
            source = fields.pop(key)
    ro = fields.pop("readonly", fields.pop("ro", None))
    if ro is not None:
        if ro.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"--mount {spec!r}: readonly must be true or false")
        flags.append("ro" if ro.lower() in ("true", "1") else "rw")
    opts = [f for f in flags if f not in ("readonly",)] + (["ro"] if "readonly" in flags else [])
    if mtype == "bind":
        if not source.startswith("/"):
            raise InvalidArgument(f"--mount {spec!r}: a bind needs an absolute src=")
        for key in ("bind-propagation", "relabel"):
            fields.pop(key, None)
        _no_extra(spec, fields)
        opts += [] if ("bind" in opts or "rbind" in opts) else ["rbind"]
    elif mtype == "tmpfs":
        if source:
            raise InvalidArgument(f"--mount {spec!r}: a tmpfs takes no src=")
        if "tmpfs-size" in fields:
            opts.append(f"size={parse_memory(fields.pop('tmpfs-size'), '--mount tmpfs-size')}")
        if "tmpfs-mode" in fields:
            mode = fields.pop("tmpfs-mode")
            if not re.fullmatch(r"[0-7]{1,4}", mode):
                raise InvalidArgument(f"--mount {spec!r}: tmpfs-mode must be octal")
            opts.append(f"mode={mode}")
        _no_extra(spec, fields)
    else:
        for key in ("id", "sharing", "mode", "uid", "gid", "from"):
            if key in fields:
                opts.append(f"{key}={fields.pop(key)}")
        _no_extra(spec, fields)
    return Mount(mtype, source, dest, tuple(opts))


def _no_extra(spec: str, fields: dict[str, str]) -> None:
    if fields:
        raise InvalidArgument(f"--mount {spec!r}: unknown field {next(iter(fields))!r}")


def _check_destination(flag: str, spec: str, dest: str) -> None:
    if not dest.startswith("/"):
        raise InvalidArgument(f"{flag} {spec!r}: the container path must be absolute")
    if posixpath.normpath(dest) == "/":  # ("/.." too: ".." stops at the root)
        raise InvalidArgument(f"{flag} {spec!r}: a mount cannot cover the container's root")


# -- ulimits, memory, hosts ---------------------------------------------------------------------

ULIMIT_NAMES = {
    "as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}  # fmt: skip


class Ulimit(NamedTuple):
    name: str  # "RLIMIT_NOFILE"
    soft: int
    hard: int


def parse_ulimit(spec: str) -> Ulimit:
    """``nofile=1024:2048`` (or ``nofile=1024``; ``-1`` is unlimited) -> ``Ulimit``."""
    name, sep, values = spec.partition("=")
    if not sep or name.lower() not in ULIMIT_NAMES:
        raise InvalidArgument(
            f"--ulimit {spec!r} is invalid: use NAME=SOFT[:HARD] with NAME one of "
            + ", ".join(sorted(ULIMIT_NAMES))
        )
    soft_s, _, hard_s = values.partition(":")
    soft = _ulimit_value(spec, soft_s)
    hard = _ulimit_value(spec, hard_s) if hard_s else soft
    if soft > hard:
        raise InvalidArgument(f"--ulimit {spec!r}: the soft limit exceeds the hard limit")
    return Ulimit(ULIMIT_NAMES[name.lower()], soft, hard)


def _ulimit_value(spec: str, text: str) -> int:
    if text in ("-1", "unlimited"):
        return RLIM_INFINITY
    if not text.isdigit():
        raise InvalidArgument(f"--ulimit {spec!r}: {text!r} is not a number")
    return int(text)


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_memory(text: str, flag: str = "--memory") -> int:
    """``512m``, ``1.5g``, ``100000`` -> bytes (binary units, as docker and buildah)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgtp]?)b?\s*", text.lower())
    if not m:
        raise InvalidArgument(f"{flag} {text!r} is invalid: use a size such as 512m or 2g")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse_add_host(spec: str) -> tuple[str, str]:
    """``name:ip`` (the ip may be IPv6) -> (name, ip)."""
    name, sep, ip = spec.partition(":")
    if not sep or not name or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise InvalidArgument(f"--add-host {spec!r} is invalid: use NAME:IP")
    import ipaddress  # start-up: only --add-host needs it (its import: ~1 ms)

    try:
        ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise InvalidArgument(f"--add-host {spec!r}: {ip!r} is not an IP address") from None
    return name, ip.strip("[]")
