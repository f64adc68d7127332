"""Options shared by the working-container verbs (``run``'s flags -> ``RunOptions``)."""

from __future__ import annotations

import click

NETWORKS = ("none", "private", "host")


def run_options(f):
    """The ``kiln run`` flags, as buildah run spells them."""
    opts = [
        click.option("--network", "--net", "network", type=click.Choice(NETWORKS), default=None,
                     help="Network namespace: none, private or host"),
        click.option("--shm-size", default=None, metavar="SIZE", help="Size of /dev/shm"),
        click.option("--add-host", multiple=True, metavar="HOST:IP", help="Add a line to /etc/hosts"),
        click.option("--dns", multiple=True, metavar="IP", help="DNS servers for /etc/resolv.conf"),
        click.option("--dns-search", multiple=True, metavar="DOMAIN", help="DNS search domains"),
        click.option("--dns-option", multiple=True, metavar="OPT", help="DNS options"),
        click.option("-u", "--user", default=None, metavar="USER[:GROUP]", help="Run as this user"),
        click.option("--workingdir", default=None, metavar="DIR",
                     help="Working directory (created if missing)"),
        click.option("-e", "--env", multiple=True, metavar="K=V", help="Add to the environment"),
        click.option("-v", "--volume", multiple=True, metavar="HOST:CTR[:OPTS]",
                     help="Bind-mount a host directory"),
        click.option("--mount", multiple=True, metavar="type=bind|tmpfs|cache,...",
                     help="Attach a mount"),
        click.option("--cap-add", multiple=True, metavar="CAP", help="Add a capability"),
        click.option("--cap-drop", multiple=True, metavar="CAP", help="Drop a capability"),
        click.option("--ulimit", multiple=True, metavar="NAME=SOFT[:HARD]", help="Resource limit"),
        click.option("-m", "--memory", default=None, metavar="SIZE", help="Memory limit"),
        click.option("--memory-swap", default=None, metavar="SIZE", help="Memory + swap limit"),
        click.option("-c", "--cpu-shares", type=int, default=None, help="CPU shares"),
        click.option("--cpu-period", type=int, default=None, help="CFS period (microseconds)"),
        click.option("--cpu-quota", type=int, default=None, help="CFS quota (microseconds)"),
        click.option("--cpuset-cpus", default="", metavar="CPUS", help="CPUs to run on"),
        click.option("--cpuset-mems", default="", metavar="NODES", help="Memory nodes"),
        click.option("--security-opt", multiple=True, metavar="OPT",
                     help="seccomp=unconfined|PROFILE, no-new-privileges"),
        click.option("--isolation", type=click.Choice(("oci", "chroot")), default=None,
                     help="oci (runc) or chroot (no runtime binary)"),
        click.option("--runtime", default=None, metavar="PATH", help="OCI runtime binary"),
        click.option("--hostname", default="", help="Hostname inside the container"),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY"),
    ]  # fmt: skip
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_run_options(args, kw: dict):
    """``RunOptions`` from the parsed flags (parsers from ``kiln.runtime`` name bad values)."""
    import os

    from kiln.errors import InvalidArgument
    from kiln.runtime import RunOptions, parse_memory, parse_mount, parse_volume

    seccomp, no_new_privs = "default", False
    for opt in kw["security_opt"]:
        key, _, value = opt.partition("=")
        if key == "seccomp" and value:
            seccomp = value
        elif key in ("no-new-privileges", "no_new_privileges"):
            no_new_privs = value.lower() not in ("false", "0")
        elif key in ("label", "apparmor"):
            continue
        else:
            raise InvalidArgument(f"--security-opt {opt!r} is not supported")
    fields = {
        "args": list(args),
        "env": list(kw["env"]),
        "user": kw["user"] or "",
        "cwd": kw["workingdir"] or "/",
        "hostname": kw["hostname"] or "",
        "mounts": [parse_volume(v) for v in kw["volume"]] + [parse_mount(m) for m in kw["mount"]],
        "add_hosts": list(kw["add_host"]),
        "dns": list(kw["dns"]),
        "dns_search": list(kw["dns_search"]),
        "dns_options": list(kw["dns_option"]),
        "cap_add": list(kw["cap_add"]),
        "cap_drop": list(kw["cap_drop"]),
        "ulimits": list(kw["ulimit"]),
        "cpu_shares": kw["cpu_shares"],
        "cpu_period": kw["cpu_period"],
        "cpu_quota": kw["cpu_quota"],
        "cpuset_cpus": kw["cpuset_cpus"],
        "cpuset_mems": kw["cpuset_mems"],
        "seccomp": seccomp,
        "no_new_privileges": no_new_privs,
        "terminal": kw["tty"],
    }
    if kw["network"]:
        fields["network"] = kw["network"]
    if kw["shm_size"]:
        fields["shm_size"] = parse_memory(kw["shm_size"], "--shm-size")
    if kw["memory"]:
        fields["memory"] = parse_memory(kw["memory"], "--memory")
    if kw["memory_swap"]:
        fields["memory_swap"] = (
            -1 if kw["memory_swap"] == "-1" else parse_memory(kw["memory_swap"], "--memory-swap")
        )
    isolation = kw["isolation"] or os.environ.get("BUILDAH_ISOLATION", "").lower() or None
    if isolation:
        fields["isolation"] = isolation
    if kw["runtime"]:
        fields["runtime"] = kw["runtime"]
    return RunOptions(**fields)
