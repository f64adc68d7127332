"""The RUN flags ``kiln build``, ``kiln run`` and ``kiln from`` share, declared once, and the
``RunSettings`` they make (``kiln.runtime.options``).

Each flag is one entry of ``FLAGS``: its declaration, the Python name the command
receives and its help, worded per verb where the verbs' help differs (a build's flag
speaks of RUN steps; ``kiln from`` words them as ``kiln run``, whose defaults they become).
``run_flag(name, verb)`` is one flag as a decorator, so a verb keeps its own order in
``--help``; ``run_flags(verb)`` is all of them in ``FLAGS`` order. ``volume_flag(verb)`` is
``-v/--volume``, declared the same way but outside ``FLAGS``: a mount, not a ``RunSettings``
field, so the command passes it on itself.
``run_settings(kw)`` takes the flags' values out of the command's keyword arguments and
parses them: sizes, comma lists, the network and isolation words (``$BUILDAH_ISOLATION``
when ``--isolation`` is not given). Bad values are ``InvalidArgument`` naming the flag.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from kiln.util.choices import Isolation, NetworkMode

if TYPE_CHECKING:
    from kiln.runtime.options import RunSettings


class _Flag:
    """One container flag, declared once for every verb that takes it (a plain class: a
    dataclass's generated methods, never used here, cost every build ~0.5 ms to compile)."""

    __slots__ = ("decls", "help", "options", "per_verb")

    def __init__(
        self,
        decls: tuple[str, ...],  # ("-m", "--memory", "memory"): the last is the parameter name
        help: dict[str, str],  # noqa: A002  verb ("build", "run") -> help; others take run's
        options: dict[str, Any] | None = None,  # click.option keyword arguments
        per_verb: dict[str, dict[str, Any]] | None = None,  # verb -> overrides
    ) -> None:
        self.decls, self.help = decls, help
        self.options = {} if options is None else options
        self.per_verb = {} if per_verb is None else per_verb

    @property
    def name(self) -> str:
        return self.decls[-1]

    def option(self, verb: str):
        like = verb if verb in self.help else "run"  # kiln from words them as kiln run
        kwargs = {**self.options, **self.per_verb.get(like, {})}
        return click.option(*self.decls, help=self.help[like], **kwargs)


def _list(metavar: str) -> dict[str, Any]:
    return {"multiple": True, "metavar": metavar}


_NETWORKS = ("none", "private", "host")  # the order ``kiln run --help`` shows them in

FLAGS = [
    _Flag(("--network", "--net", "network"),
          {"build": "RUN network: host (default), none, private",
           "run": "Network namespace: none, private or host"},
          {"default": None},
          {"run": {"type": click.Choice(_NETWORKS)}}),
    _Flag(("--isolation", "isolation"),
          {"build": "RUN isolation: oci (runc) or chroot",
           "run": "oci (runc) or chroot (no runtime binary)"},
          {"type": click.Choice(Isolation.words()), "default": None}),
    _Flag(("--runtime", "runtime"),
          {"build": "OCI runtime for RUN", "run": "OCI runtime binary"},
          {"default": None},
          {"build": {"default": "runc", "show_default": True}, "run": {"metavar": "PATH"}}),
    _Flag(("--add-host", "add_hosts"),
          {"build": "Add a line to /etc/hosts of every RUN", "run": "Add a line to /etc/hosts"},
          _list("HOST:IP")),
    _Flag(("--dns", "dns"),
          {"build": "DNS server for RUN's /etc/resolv.conf",
           "run": "DNS servers for /etc/resolv.conf"},
          _list("IP")),
    _Flag(("--dns-search", "dns_search"),
          {"build": "DNS search domain for RUN", "run": "DNS search domains"},
          _list("DOMAIN")),
    _Flag(("--dns-option", "dns_options"),
          {"build": "resolv.conf option for RUN", "run": "DNS options"},
          _list("OPTION"), {"run": {"metavar": "OPT"}}),
    _Flag(("--cap-add", "cap_add"),
          {"build": "Add a capability to RUN's defaults", "run": "Add a capability"},
          _list("CAP")),
    _Flag(("--cap-drop", "cap_drop"),
          {"build": "Drop a capability from RUN's defaults", "run": "Drop a capability"},
          _list("CAP")),
    _Flag(("--ulimit", "ulimits"),
          {"build": "Resource limit for RUN", "run": "Resource limit"},
          _list("TYPE=SOFT[:HARD]"), {"run": {"metavar": "NAME=SOFT[:HARD]"}}),
    _Flag(("-m", "--memory", "memory"),
          {"build": "Memory limit of RUN (e.g. 512m)", "run": "Memory limit"},
          {"default": None, "metavar": "SIZE"}),
    _Flag(("--memory-swap", "memory_swap"),
          {"build": "Memory + swap limit of RUN", "run": "Memory + swap limit"},
          {"default": None, "metavar": "SIZE"}),
    _Flag(("-c", "--cpu-shares", "cpu_shares"),
          {"build": "CPU shares (relative weight) of RUN", "run": "CPU shares"},
          {"type": int, "default": None}),
    _Flag(("--cpu-period", "cpu_period"),
          {"build": "CFS period of RUN (microseconds)", "run": "CFS period (microseconds)"},
          {"type": int, "default": None}),
    _Flag(("--cpu-quota", "cpu_quota"),
          {"build": "CFS quota of RUN (microseconds per period)",
           "run": "CFS quota (microseconds)"},
          {"type": int, "default": None}),
    _Flag(("--cpuset-cpus", "cpuset_cpus"),
          {"build": "CPUs RUN may use (0-3, 0,1)", "run": "CPUs to run on"},
          {"default": "", "metavar": "CPUS"}),
    _Flag(("--cpuset-mems", "cpuset_mems"),
          {"build": "Memory nodes RUN may use (NUMA)", "run": "Memory nodes"},
          {"default": "", "metavar": "NODES"}),
    _Flag(("--shm-size", "shm_size"),
          {"build": "Size of RUN's /dev/shm (default 64m)", "run": "Size of /dev/shm"},
          {"default": None, "metavar": "SIZE"}),
]  # fmt: skip
_BY_NAME = {f.name: f for f in FLAGS}
_VOLUME = _Flag(("-v", "--volume", "volumes"),
                {"build": "Bind-mount a host directory into every RUN",
                 "from": "Bind-mount a host directory in every kiln run",
                 "run": "Bind-mount a host directory"},
                _list("HOST:CTR[:OPTS]"))  # fmt: skip
_COMMA_LISTS = ("dns", "dns_search", "cap_add", "cap_drop")  # "--dns a,b" as podman


def run_flag(name: str, verb: str):
    """The one RUN flag ``name`` (its parameter name) as ``verb`` words it."""
    return _BY_NAME[name].option(verb)


def volume_flag(verb: str):
    """``-v/--volume HOST:CTR[:OPTS]`` (parameter ``volumes``) as ``verb`` words it."""
    return _VOLUME.option(verb)


def run_flags(verb: str):
    """Every RUN flag, in ``FLAGS`` order."""

    def decorate(f):
        for flag in reversed(FLAGS):
            f = flag.option(verb)(f)
        return f

    return decorate


def run_settings(kw: dict[str, Any], **more: Any) -> RunSettings:
    """The ``RunSettings`` the RUN flags in ``kw`` ask for; they are removed from ``kw``.
    ``more``: the settings of a verb's own flags (``kiln from --device``), as given."""
    # start-up: kiln --help imports every verb, and kiln.runtime is not light
    from kiln.runtime.options import RunSettings, parse_memory

    given = {f.name: kw.pop(f.name) for f in FLAGS if f.name in kw}
    for name in ("add_hosts", "dns_options", "ulimits", *_COMMA_LISTS):
        if name in given:
            values = list(given[name])
            given[name] = _split(values) if name in _COMMA_LISTS else values
    for name, flag in (("memory", "--memory"), ("shm_size", "--shm-size")):
        if given.get(name):
            given[name] = parse_memory(given[name], flag)
    if given.get("memory_swap"):
        swap = given["memory_swap"]
        given["memory_swap"] = -1 if swap == "-1" else parse_memory(swap, "--memory-swap")
    if given.get("network"):
        given["network"] = NetworkMode.parse(given["network"])
    isolation = given.get("isolation") or os.environ.get("BUILDAH_ISOLATION", "")
    given["isolation"] = Isolation.parse(isolation, "$BUILDAH_ISOLATION") if isolation else None
    given.update(more)
    return RunSettings.given(**{k: v or None for k, v in given.items()})


def _split(values: list[str]) -> list[str]:
    return [v for item in values for v in item.split(",") if v]
