"""The per-run /etc/hosts, /etc/resolv.conf and /etc/hostname.

They are written into the bundle directory (never into the rootfs) and bind-mounted over
the container's files, so nothing the run needed only for itself ends up in a layer.
"""

from __future__ import annotations

import os

# the C parser of addresses, without the socket module's import (its enums) or ipaddress's
# (its network tables): ~1 ms of every RUN's start
from _socket import AF_INET, AF_INET6, inet_pton

from kiln.errors import InvalidArgument

from .options import RunOptions, parse_add_host

HOST_RESOLV_CONF = "/etc/resolv.conf"
#: what :func:`write_etc_files` wrote into a file: (text, ctime_ns, inode) after the write
Written = tuple[str, int, int]
# Used when no usable nameserver is left (as podman does).
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")


def hosts_text(opts: RunOptions, hostname: str) -> str:
    lines = [
        "127.0.0.1\tlocalhost localhost.localdomain localhost4 localhost4.localdomain4",
        "::1\tlocalhost localhost.localdomain localhost6 localhost6.localdomain6",
    ]
    for spec in opts.add_hosts:
        name, ip = parse_add_host(spec)
        lines.append(f"{ip}\t{name}")
    if hostname:
        lines.append(f"127.0.1.1\t{hostname}")
    return "\n".join(lines) + "\n"


def _parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options.extend(words[1:])
    return nameservers, search, options


_IPV6_LOOPBACK = bytes(15) + b"\x01"


def _is_local(ns: str) -> bool:
    """Whether nameserver ``ns`` is a loopback address (127.0.0.0/8 or ::1; a zone index
    ignored), as ``ipaddress.ip_address(ns).is_loopback``; False for what is no address."""
    ns = ns.split("%")[0]
    try:
        return inet_pton(AF_INET, ns)[0] == 127
    except (OSError, ValueError):
        pass
    try:
        return inet_pton(AF_INET6, ns) == _IPV6_LOOPBACK
    except (OSError, ValueError):
        return False


def resolv_conf_text(opts: RunOptions, host_text: str | None = None) -> str:
    """The host's resolver setup, minus loopback nameservers off the host network, overridden
    by --dns, --dns-search and --dns-option."""
    if host_text is None:
        try:
            with open(HOST_RESOLV_CONF, encoding="utf-8", errors="replace") as f:
                host_text = f.read(1024 * 1024)
        except OSError:
            host_text = ""
    nameservers, search, options = _parse_resolv(host_text)
    if opts.network != "host":
        nameservers = [ns for ns in nameservers if not _is_local(ns)]
    if opts.dns:
        for ns in opts.dns:
            import ipaddress  # start-up: only --dns needs it

            try:
                ipaddress.ip_address(ns)
            except ValueError:
                raise InvalidArgument(f"--dns {ns!r} is not an IP address") from None
        nameservers = list(opts.dns)
    if not nameservers and opts.network != "host":
        nameservers = list(FALLBACK_NAMESERVERS)
    if opts.dns_search:
        search = [] if list(opts.dns_search) == ["."] else list(opts.dns_search)
    if opts.dns_options:
        options = list(opts.dns_options)
    lines = [f"nameserver {ns}" for ns in nameservers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def write_etc_files(
    bundle: str, opts: RunOptions, hostname: str, written: dict[str, Written] | None = None
) -> dict[str, str]:
    """Write the three files (two with ``opts.no_hosts``: no /etc/hosts) into ``bundle``;
    returns {container path: host path}.

    ``written`` (file name -> what was written) is kept by a bundle that is reused: a file
    is written again unless it holds the same text and nothing touched it since (its ctime
    and inode are as they were: a run may write to these files through their bind mounts,
    and no change of a run may reach the next)."""
    files = {
        "/etc/hosts": ("hosts", hosts_text(opts, hostname)),
        "/etc/resolv.conf": ("resolv.conf", resolv_conf_text(opts)),
        "/etc/hostname": ("hostname", hostname + "\n"),
    }
    if opts.no_hosts:
        del files["/etc/hosts"]
    result = {}
    for ctr_path, (name, text) in files.items():
        path = os.path.join(bundle, name)
        result[ctr_path] = path
        if written is not None and written.get(name, (None,))[0] == text:
            try:
                st = os.lstat(path)
            except OSError:
                pass
            else:
                if written[name][1:] == (st.st_ctime_ns, st.st_ino):
                    continue
        if written is not None:
            written.pop(name, None)
        st = overwrite(path, text.encode(), 0o644)
        if written is not None:
            written[name] = (text, st.st_ctime_ns, st.st_ino)
    return result


def overwrite(path: str, data: bytes, mode: int) -> os.stat_result:
    """Make ``path`` (a file in a bundle, created if missing) hold ``data`` with ``mode``;
    returns its stat after the write. An existing file is written over and then cut to
    length, never truncated to zero first: ext4 flushes a file truncated to zero and
    written again when it is closed (``auto_da_alloc``), a wait of milliseconds."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if os.fstat(fd).st_size != len(data):
            os.ftruncate(fd, len(data))
        os.fchmod(fd, mode)
        return os.fstat(fd)
    finally:
        os.close(fd)
