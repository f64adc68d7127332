"""Results of kiln.ops rendered in the JSON shapes Docker and podman clients decode."""

from __future__ import annotations

from typing import Any

from kiln.errors import InvalidArgument
from kiln.oci import Reference
from kiln.ops.timefmt import parse_time

NONE_TAG = "<none>:<none>"
NONE_DIGEST = "<none>@<none>"


def familiar(name: str) -> str:
    """``docker.io/library/a:1`` -> ``a:1``, ``docker.io/u/a:1`` -> ``u/a:1``; any other
    registry, ``localhost/`` included, stays (as dockerd and podman's Docker API show names)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            # keep the prefix when what is left would read as a registry host
            first = rest.split("/", 1)[0]
            if "/" in rest and ("." in first or ":" in first or first == "localhost"):
                return name
            return rest
    return name


def docker_name(value: str) -> str:
    """A name a Docker client gave, as dockerd reads it: a short name is on Docker Hub
    (``amb:1`` -> ``docker.io/library/amb:1``), as the docker CLI's own ``tag`` already
    sends it; kiln's command line and the libpod routes put short names under
    ``localhost/`` instead, as podman does. Unparseable values are left for the use case
    to refuse."""

    try:
        ref = Reference.parse(value)
    except InvalidArgument:
        return value
    return value if ref.digest else str(ref)


def with_sha(image_id: str) -> str:
    return image_id if image_id.startswith("sha256:") or not image_id else f"sha256:{image_id}"


def bare(image_id: str) -> str:
    return image_id.removeprefix("sha256:")


def unix_time(created: str | None) -> int:
    return int(parse_time(created) or 0) if created else 0


def docker_summary(s: Any, legacy: bool = False) -> dict[str, Any]:
    """An ``ImageSummary`` of the Docker API from an ``ops.images.ImageSummary``."""
    tags = [familiar(n) for n in s.names if "@" not in n]
    digests = [familiar(d) for d in s.repo_digests]
    out: dict[str, Any] = {
        "Id": with_sha(s.id),
        "ParentId": with_sha(s.parent_id) if s.parent_id else "",
        "RepoTags": tags or ([NONE_TAG] if legacy else []),
        "RepoDigests": digests or ([NONE_DIGEST] if legacy else []),
        "Created": int(s.created_ts),
        "Size": int(s.size),
        "SharedSize": -1,
        "Labels": dict(s.labels or {}),
        "Containers": int(s.containers),
    }
    if legacy:
        out["VirtualSize"] = int(s.size)
    return out


def libpod_summary(s: Any) -> dict[str, Any]:
    """podman's ``entities.ImageSummary`` (what ``podman images --format json`` prints)."""
    out = dict(s.to_json())
    out.setdefault("ReadOnly", False)
    out.setdefault("History", list(s.names))
    out["Labels"] = out.get("Labels") or {}
    out["RepoTags"] = out.get("RepoTags") or []
    return out


def docker_inspect(data: dict[str, Any]) -> dict[str, Any]:
    """Docker's ``ImageInspect`` from podman's inspect object."""
    config = dict(data.get("Config") or {})
    for key in ("Env", "Cmd", "Entrypoint"):
        if key in config and config[key] is None:
            config.pop(key)
    rootfs = data.get("RootFS") or {}
    layers = list(rootfs.get("Layers") or [])
    out: dict[str, Any] = {
        "Id": with_sha(str(data.get("Id", ""))),
        "RepoTags": [familiar(n) for n in (data.get("RepoTags") or [])],
        "RepoDigests": [familiar(n) for n in (data.get("RepoDigests") or [])],
        "Parent": with_sha(data["Parent"]) if data.get("Parent") else "",
        "Comment": data.get("Comment") or "",
        "Created": data.get("Created") or "",
        "DockerVersion": data.get("Version") or "",
        "Author": data.get("Author") or "",
        "Config": config,
        "Architecture": data.get("Architecture") or "",
        "Os": data.get("Os") or "",
        "Size": int(data.get("Size") or 0),
        "GraphDriver": {"Name": "kiln", "Data": None},
        "RootFS": {"Type": rootfs.get("Type") or "layers", "Layers": layers},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }
    if data.get("Variant"):
        out["Variant"] = data["Variant"]
    return out


def docker_history(entries: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "Id": with_sha(e.id) if e.id and e.id != "<missing>" else "<missing>",
            "Created": unix_time(e.created),
            "CreatedBy": e.created_by,
            "Tags": [familiar(t) for t in e.tags] or None,
            "Size": int(e.size),
            "Comment": e.comment,
        }
        for e in entries
    ]


def libpod_history(entries: list[Any]) -> list[dict[str, Any]]:
    """podman serves the Docker shape here too, with bare IDs."""
    return [
        {
            "Id": bare(e.id) if e.id and e.id != "<missing>" else "<missing>",
            "Created": unix_time(e.created),
            "CreatedBy": e.created_by,
            "Tags": list(e.tags) or None,
            "Size": int(e.size),
            "Comment": e.comment,
        }
        for e in entries
    ]


def delete_items(result: Any) -> list[dict[str, str]]:
    """``[{"Untagged": ...}, {"Deleted": ...}]`` from an ``ops.images.RemoveResult``."""
    items = [{"Untagged": familiar(n)} for n in result.untagged]
    items += [{"Deleted": with_sha(i)} for i in result.deleted]
    return items


__all__ = [
    "bare",
    "delete_items",
    "docker_history",
    "docker_inspect",
    "docker_name",
    "docker_summary",
    "familiar",
    "libpod_history",
    "libpod_summary",
    "unix_time",
    "with_sha",
]
