"""The persisted state of one working container, as the JSON kept in ``ContainerRecord.state``.

The JSON carries ``{"kiln_container_version": 1, ...}``. State without that marker (another
tool's, or corrupt) and state written by a newer kiln are refused rather than guessed at.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from kiln.errors import InvalidArgument
from kiln.oci import History, ImageConfig
from kiln.oci.strict_json import canonical
from kiln.util.choices import IMAGE_FORMATS
from kiln.util.lazy_dataclass import dataclass

STATE_MARKER = "kiln_container_version"
STATE_VERSION = 1
FORMATS = IMAGE_FORMATS


@dataclass
class AddedContent:
    """One COPY/ADD into the container: what it wrote and the digest of the content."""

    kind: str  # "copy" | "add"
    sources: list[str]
    dest: str
    digest: str

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "sources": self.sources,
            "dest": self.dest,
            "digest": self.digest,
        }

    @classmethod
    def from_json(cls, obj: dict) -> AddedContent:
        return cls(
            str(obj.get("kind", "")),
            [str(s) for s in obj.get("sources") or []],
            str(obj.get("dest", "")),
            str(obj.get("digest", "")),
        )


@dataclass
class ContainerState:
    """Everything kiln knows about a working container besides its record's id/name."""

    image_id: str | None  # None for scratch
    image_name: str  # what the user asked for ("busybox", "scratch", an ID)
    config: ImageConfig  # the config being edited: base rootfs.diff_ids and history included
    snapshot_key: str
    parent_chain_id: str | None  # top layer of the base image, None for scratch
    mount_point: str | None = None  # set while mounted by ``kiln mount``
    history: list[History] = field(default_factory=list)  # to add at commit, oldest first
    annotations: dict[str, str] = field(default_factory=dict)
    format: str = "oci"
    added: list[AddedContent] = field(default_factory=list)
    created_by: str = ""  # history "created_by" for the commit's layer ("" -> default)
    history_comment: str = ""
    image_comment: str = ""
    # a build's own container: the kiln process building (kiln.util.process_owner); once
    # that process is dead, the next kiln command removes the container. "" for a user's.
    owner: str = ""
    # the RUN settings ``kiln from`` was given (``RunSettings.to_json``): what ``kiln run``
    # uses unless its own flags say otherwise, as buildah keeps them
    run: dict[str, Any] = field(default_factory=dict)
    # ``kiln from --volume`` specs (HOST:CTR[:OPTS]), bound in every ``kiln run`` unless
    # that run mounts something else at the same place, as buildah keeps them
    volumes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            STATE_MARKER: STATE_VERSION,
            "image_id": self.image_id,
            "image_name": self.image_name,
            "config": self.config.to_json(),
            "snapshot_key": self.snapshot_key,
            "parent_chain_id": self.parent_chain_id,
            "mount_point": self.mount_point,
            "history": [h.to_json() for h in self.history],
            "annotations": dict(self.annotations),
            "format": self.format,
            "added": [a.to_json() for a in self.added],
            "created_by": self.created_by,
            "history_comment": self.history_comment,
            "image_comment": self.image_comment,
            **({"owner": self.owner} if self.owner else {}),
            **({"run": dict(self.run)} if self.run else {}),
            **({"volumes": list(self.volumes)} if self.volumes else {}),
        }

    @classmethod
    def from_json(cls, obj: Any, what: str = "container") -> ContainerState:
        if not isinstance(obj, dict) or STATE_MARKER not in obj:
            raise InvalidArgument(
                f"{what} was not made by kiln (its state has no {STATE_MARKER!r} marker): "
                "manage it with the tool that created it"
            )
        version = obj[STATE_MARKER]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InvalidArgument(f"{what} has an invalid state version {version!r}")
        if version > STATE_VERSION:
            raise InvalidArgument(
                f"{what} was written by a newer kiln (state version {version}, this kiln "
                f"understands {STATE_VERSION}): upgrade kiln to use it"
            )
        try:
            config = ImageConfig.parse(canonical(obj["config"])).evolve()
            fmt = obj.get("format") or "oci"
            if fmt not in FORMATS:
                raise InvalidArgument(f"{what} has an unknown image format {fmt!r}")
            return cls(
                image_id=_opt_str(obj.get("image_id")),
                image_name=str(obj.get("image_name") or ""),
                config=config,
                snapshot_key=str(obj["snapshot_key"]),
                parent_chain_id=_opt_str(obj.get("parent_chain_id")),
                mount_point=_opt_str(obj.get("mount_point")),
                history=[History.from_json(h) for h in obj.get("history") or []],
                annotations={str(k): str(v) for k, v in (obj.get("annotations") or {}).items()},
                format=fmt,
                added=[AddedContent.from_json(a) for a in obj.get("added") or []],
                created_by=str(obj.get("created_by") or ""),
                history_comment=str(obj.get("history_comment") or ""),
                image_comment=str(obj.get("image_comment") or ""),
                owner=str(obj.get("owner") or ""),
                run=dict(obj.get("run") or {}),
                volumes=[str(v) for v in obj.get("volumes") or []],
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgument(
                f"{what} has damaged state ({exc!r}): remove it with kiln rm"
            ) from None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
