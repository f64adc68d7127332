"""Options shared by the working-container verbs (``run``'s flags -> ``RunOptions``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kiln.cli.commands._run_flags import run_flag, run_settings, volume_flag
from kiln.errors import InvalidArgument

if TYPE_CHECKING:
    from kiln.runtime.options import RunOptions


SECURITY_OPT_HELP = "seccomp=unconfined|PROFILE, no-new-privileges, label=disable"


def namespace_flags(f):
    """``--ipc``, ``--pid``, ``--uts`` (buildah's words) for ``kiln from`` and ``kiln run``."""
    for kind in reversed(("ipc", "pid", "uts")):
        f = click.option(f"--{kind}", kind, default=None, metavar="private|host|PATH",
                         help=f"{kind.upper()} namespace: private, host or the path of one "
                         "to join")(f)  # fmt: skip
    return f


def namespace_settings(kw: dict) -> dict:
    """The ``RunSettings`` fields of the namespace flags given (taken out of ``kw``)."""
    return {k: v for k in ("ipc", "pid", "uts") if (v := kw.pop(k)) is not None}


def run_options(f):
    """The ``kiln run`` flags, as buildah run spells them (the RUN settings among them
    are ``kiln.cli.commands._run_flags``'s, shared with ``kiln build``)."""
    opts = [
        run_flag("network", "run"),
        run_flag("shm_size", "run"),
        run_flag("add_hosts", "run"),
        click.option("--no-hosts", is_flag=True,
                     help="Leave the image's /etc/hosts (no kiln /etc/hosts)"),
        run_flag("dns", "run"),
        run_flag("dns_search", "run"),
        run_flag("dns_options", "run"),
        click.option("-u", "--user", default=None, metavar="USER[:GROUP]", help="Run as this user"),
        click.option("--workingdir", default=None, metavar="DIR",
                     help="Working directory (created if missing)"),
        click.option("-e", "--env", multiple=True, metavar="K=V", help="Add to the environment"),
        volume_flag("run"),
        click.option("--mount", multiple=True, metavar="type=bind|tmpfs|cache,...",
                     help="Attach a mount"),
        run_flag("cap_add", "run"),
        run_flag("cap_drop", "run"),
        run_flag("ulimits", "run"),
        run_flag("memory", "run"),
        run_flag("memory_swap", "run"),
        run_flag("cpu_shares", "run"),
        run_flag("cpu_period", "run"),
        run_flag("cpu_quota", "run"),
        run_flag("cpuset_cpus", "run"),
        run_flag("cpuset_mems", "run"),
        click.option("--security-opt", multiple=True, metavar="OPT",
                     help=SECURITY_OPT_HELP),
        run_flag("isolation", "run"),
        run_flag("runtime", "run"),
        namespace_flags,
        click.option("--hostname", default="", help="Hostname inside the container"),
        click.option("-t", "--tty", "--terminal", "tty", is_flag=True,
                     help="Allocate a pseudo-TTY"),
    ]  # fmt: skip
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_run_options(args, kw: dict) -> RunOptions:
    """``RunOptions`` from the parsed flags (parsers from ``kiln.runtime`` name bad values)."""
    # start-up: kiln --help imports every verb, and kiln.runtime is not light
    from kiln.runtime.options import RunOptions, parse_mount, parse_security_opts, parse_volume

    if kw["no_hosts"] and kw["add_hosts"]:
        raise InvalidArgument("--no-hosts and --add-host conflict: /etc/hosts is the image's")
    return RunOptions.of(
        run_settings(kw, **parse_security_opts(kw["security_opt"]), **namespace_settings(kw)),
        args=list(args),
        env=list(kw["env"]),
        user=kw["user"] or "",
        cwd=kw["workingdir"] or "/",
        hostname=kw["hostname"] or "",
        no_hosts=kw["no_hosts"],
        mounts=[parse_volume(v) for v in kw["volumes"]] + [parse_mount(m) for m in kw["mount"]],
        terminal=kw["tty"],
    )
