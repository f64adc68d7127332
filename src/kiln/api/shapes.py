"""Results of kiln.ops rendered in the JSON shapes Docker and podman clients decode."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from kiln.errors import InvalidArgument
from kiln.oci import Reference
from kiln.ops.images import podman_comment
from kiln.ops.timefmt import parse_time
from kiln.util.timefmt import as_rfc3339nano

from .versions import version_at_least

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


def missing_name(name: str) -> str:
    """``name`` as dockerd's "No such image: ..." shows it: a reference with its default
    tag, familiar (``nope`` -> ``nope:latest``); an image ID, or what is no reference, as
    given."""
    if name.startswith("sha256:") or _FULL_ID.fullmatch(name):
        return name
    try:
        return familiar(str(Reference.parse(name)))
    except InvalidArgument:
        return name


_FULL_ID = re.compile(r"[0-9a-f]{64}")


def with_sha(image_id: str) -> str:
    return image_id if image_id.startswith("sha256:") or not image_id else f"sha256:{image_id}"


def bare(image_id: str) -> str:
    return image_id.removeprefix("sha256:")


def unix_time(created: str | None) -> int:
    return int(parse_time(created) or 0) if created else 0


def docker_summary(
    s: Any,
    version: str | None = None,
    count_containers: bool = False,
    shown: Callable[[Iterable[str]], list[str]] = list,
) -> dict[str, Any]:
    """An ``ImageSummary`` of the Docker API from an ``ops.images.ImageSummary``, as dockerd
    answers the request's API ``version`` (None: the newest):

    * before 1.43 an image with neither tags nor digests shows ``<none>:<none>`` and
      ``<none>@<none>``; any other empty list is null, as Go's nil slice encodes (a tagged
      image has ``"RepoDigests": null``); from 1.43 both are always lists, maybe empty.
    * ``VirtualSize`` (= ``Size``) before 1.44 only.
    * ``Containers`` is -1 ("not counted") before 1.51, as dockerd lists images;
      ``count_containers`` (``/system/df``, which counts at every version) gives kiln's
      working containers of the image.
    * ``shown`` picks the names and digests to show (a ``reference`` filter's matches:
      ``kiln.api.reference_filter``).

    ``Labels`` stays an object when the image has none (dockerd sends null there, against
    its own schema, which says the field is not nullable; clients index it)."""
    tags = [familiar(n) for n in shown(s.names) if "@" not in n]
    digests = [familiar(d) for d in shown(s.repo_digests)]
    repo_tags: list[str] | None = tags
    repo_digests: list[str] | None = digests
    if not version_at_least(version, "1.43"):
        if not tags and not digests:
            repo_tags, repo_digests = [NONE_TAG], [NONE_DIGEST]
        repo_tags, repo_digests = repo_tags or None, repo_digests or None
    counted = count_containers or version_at_least(version, "1.51")
    out: dict[str, Any] = {
        "Id": with_sha(s.id),
        "ParentId": with_sha(s.parent_id) if s.parent_id else "",
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Created": int(s.created_ts),
        "Size": int(s.size),
        "SharedSize": -1,
        "Labels": dict(s.labels or {}),
        "Containers": int(s.containers) if counted else -1,
    }
    if not version_at_least(version, "1.44"):
        out["VirtualSize"] = int(s.size)
    return out


def summary_shape(version: str | None) -> tuple[bool, ...]:
    """What of :func:`docker_summary`'s answer depends on the API ``version`` (for keying
    cached lists: versions of one shape share a list)."""
    return tuple(version_at_least(version, v) for v in ("1.43", "1.44", "1.51"))


def libpod_repo_digests(names: list[str], recorded: list[str], digest: str) -> list[str]:
    """podman's ``RepoDigests``: every name's repository with the image's manifest digest,
    with the ones recorded (a pull's), sorted; a loaded or built image has them too (dockerd
    shows only a registry's)."""
    out = set(recorded)
    for name in names if digest else ():
        try:
            out.add(str(Reference.parse(name).with_digest(digest)))
        except InvalidArgument:
            continue
    return sorted(out)


def libpod_inspect(data: dict[str, Any]) -> dict[str, Any]:
    """podman's inspect object with :func:`libpod_repo_digests`, and podman's ``Comment``
    (``kiln.ops.images.podman_comment``)."""
    digests = libpod_repo_digests(
        list(data.get("RepoTags") or []),
        list(data.get("RepoDigests") or []),
        str(data.get("Digest") or ""),
    )
    return {**data, "RepoDigests": digests, "Comment": podman_comment(data)}


def libpod_summary(s: Any) -> dict[str, Any]:
    """podman's ``entities.ImageSummary`` (what ``podman images --format json`` prints)."""
    out = dict(s.to_json())
    out["RepoDigests"] = libpod_repo_digests(list(s.names), list(s.repo_digests), s.digest)
    out.setdefault("ReadOnly", False)
    out.setdefault("History", list(s.names))
    out["Labels"] = out.get("Labels") or {}
    out["RepoTags"] = out.get("RepoTags") or []
    return out


def docker_comment(data: dict[str, Any]) -> str:
    """The config's ``comment``, else its last history entry's (dockerd's ``Comment``:
    ``docker import -m``'s message, a commit's)."""
    if data.get("Comment"):
        return str(data["Comment"])
    history = data.get("History") or []
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    return str(last.get("comment") or "")


def docker_created(created: Any, version: str | None) -> str:
    """inspect's ``Created`` as dockerd prints it (Go's RFC3339Nano of the config's time);
    an image without one shows Go's zero time before API 1.44, as dockerd does there."""
    text = str(created or "")
    if not text:
        return "" if version_at_least(version, "1.44") else "0001-01-01T00:00:00Z"
    return as_rfc3339nano(text) or text


# the image config's fields dockerd spells out even when unset, by API version (moby's
# legacyConfigFields): every field of its old container config before 1.50, the ones
# without "omitempty" in 1.50 and 1.51, none from 1.52. Python clients index them
# (attrs["Config"]["WorkingDir"]).
_CONFIG_FIELDS_1_50 = {"Cmd": None, "Entrypoint": None, "Env": None, "Labels": None,
                       "OnBuild": None, "User": "", "Volumes": None, "WorkingDir": ""}  # fmt: skip
_CONFIG_FIELDS_1_49 = {**_CONFIG_FIELDS_1_50, "AttachStderr": False, "AttachStdin": False,
                       "AttachStdout": False, "Domainname": "", "Hostname": "", "Image": "",
                       "OpenStdin": False, "StdinOnce": False, "Tty": False}  # fmt: skip


def legacy_config_fields(version: str | None) -> dict[str, Any]:
    """The unset config fields dockerd still shows at API ``version``, with their values."""
    if version_at_least(version, "1.52"):
        return {}
    return dict(_CONFIG_FIELDS_1_50 if version_at_least(version, "1.50") else _CONFIG_FIELDS_1_49)


def shows_container_config(version: str | None) -> bool:
    """Whether Docker's inspect at API ``version`` has ``Container`` and ``ContainerConfig``
    (dropped at 1.45: moby's "deprecated fields")."""
    return not version_at_least(version, "1.45")


def docker_inspect(data: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """Docker's ``ImageInspect`` from podman's inspect object, as dockerd answers API
    ``version`` (None: the newest): ``VirtualSize`` (= ``Size``) before 1.44 only; ``Created``
    by :func:`docker_created`; ``Config`` with :func:`legacy_config_fields`; before 1.45
    ``Container`` and ``ContainerConfig`` (the config's, else "" and a config with every
    field unset, as dockerd 20.10 shows an image that has none)."""
    config = dict(data.get("Config") or {})
    for key in ("Env", "Cmd", "Entrypoint"):
        if key in config and config[key] is None:
            config.pop(key)
    config = {**legacy_config_fields(version), **config}
    rootfs = data.get("RootFS") or {}
    layers = list(rootfs.get("Layers") or [])
    out: dict[str, Any] = {
        "Id": with_sha(str(data.get("Id", ""))),
        "RepoTags": [familiar(n) for n in (data.get("RepoTags") or [])],
        "RepoDigests": [familiar(n) for n in (data.get("RepoDigests") or [])],
        "Parent": with_sha(data["Parent"]) if data.get("Parent") else "",
        "Comment": docker_comment(data),
        "Created": docker_created(data.get("Created"), version),
        **_container_fields(data, version),
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
    if not version_at_least(version, "1.44"):
        out["VirtualSize"] = out["Size"]
    return out


def _container_fields(data: dict[str, Any], version: str | None) -> dict[str, Any]:
    if not shows_container_config(version):
        return {}
    settings = data.get("ContainerConfig") or {}
    return {
        "Container": data.get("Container") or "",
        "ContainerConfig": {**legacy_config_fields(version), **settings},
    }


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
    """podman serves the Docker shape here too, with bare IDs and (podman 4.3) no tags."""
    return [
        {
            "Id": bare(e.id) if e.id and e.id != "<missing>" else "<missing>",
            "Created": unix_time(e.created),
            "CreatedBy": e.created_by,
            "Tags": None,
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
    "docker_comment",
    "docker_created",
    "docker_history",
    "docker_inspect",
    "docker_name",
    "docker_summary",
    "familiar",
    "legacy_config_fields",
    "libpod_history",
    "libpod_inspect",
    "libpod_repo_digests",
    "libpod_summary",
    "missing_name",
    "summary_shape",
    "unix_time",
    "with_sha",
]
