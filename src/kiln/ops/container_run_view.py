"""What ``kiln inspect --type container`` shows of the settings a working container's runs
get from ``kiln from`` (``ContainerState.run``), in the shape of ``buildah inspect``'s."""

from __future__ import annotations

from typing import Any

from kiln.errors import InvalidArgument


def run_view(run: dict[str, Any]) -> dict[str, Any]:
    """``Devices`` and ``NamespaceOptions`` as buildah lists them."""
    # start-up: `kiln inspect IMAGE` loads ops.containers but inspects no container
    from kiln.runtime import RunSettings

    settings = RunSettings.from_json(run)
    return {
        "Devices": [_device(spec) for spec in settings.devices],
        "NamespaceOptions": _namespaces(settings),
    }


def _namespaces(settings: Any) -> list[dict[str, Any]]:
    """Each namespace a run gets: the host's (``Host``), one joined (``Path``) or its own.
    kiln's runs have no cgroup or user namespace of their own; their mount one is theirs."""
    chosen = {
        "cgroup": "host", "mount": "", "user": "host", "ipc": settings.ipc,
        "pid": settings.pid, "uts": settings.uts,
        "network": "host" if settings.network == "host" else "",
    }  # fmt: skip
    return [
        {"Name": name, "Host": given == "host", "Path": given if given.startswith("/") else ""}
        for name, given in sorted(chosen.items())
    ]


def _device(spec: str) -> dict[str, Any]:
    # start-up: only a container made with --device reads its devices
    from kiln.runtime.devices import host_device
    from kiln.runtime.options import parse_device

    source, dest, permissions = parse_device(spec)
    out: dict[str, Any] = {"Source": source, "Destination": dest, "path": dest,
                           "permissions": permissions, "allow": False}  # fmt: skip
    try:
        d = host_device(spec)
    except InvalidArgument:  # gone from the host since: what it was asked as
        return out
    return {**out, "type": ord(d.kind), "major": d.major, "minor": d.minor,
            "file_mode": d.mode, "uid": d.uid, "gid": d.gid}  # fmt: skip
