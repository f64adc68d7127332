"""Content descriptors: media type, digest, size, and optional extras."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from kiln.errors import InvalidArgument
from kiln.oci.digest import Digest
from kiln.oci.platform import Platform
from kiln.oci.strict_json import expect
from kiln.util.lazy_dataclass import dataclass

# sizes are int64 in the image spec (and in SQLite); anything larger is refused, never stored
MAX_SIZE = 2**63 - 1


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: media type, digest and size of a blob."""

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str = ""

    @classmethod
    def from_json(cls, obj: object, what: str = "descriptor") -> Descriptor:
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{what} must be a JSON object")
        media_type = expect(obj.get("mediaType", ""), str, f"{what}.mediaType") or ""
        digest = obj.get("digest")
        if not isinstance(digest, str):
            raise InvalidArgument(f"{what} has no digest")
        size = obj.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
            raise InvalidArgument(f"{what} has no valid size")
        annotations = expect(obj.get("annotations") or {}, dict, f"{what}.annotations")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
            raise InvalidArgument(f"{what}.annotations must map strings to strings")
        platform = obj.get("platform")
        if platform is not None and not isinstance(platform, dict):
            raise InvalidArgument(f"{what}.platform must be a JSON object")
        urls = expect(obj.get("urls") or [], list, f"{what}.urls")
        return cls(
            media_type=media_type,
            digest=Digest.parse(digest),
            size=size,
            annotations=dict(annotations),
            platform=Platform.from_json(platform) if isinstance(platform, dict) else None,
            urls=tuple(str(u) for u in urls),
            artifact_type=expect(obj.get("artifactType", ""), str, f"{what}.artifactType") or "",
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    def replace(self, **changes: Any) -> Descriptor:
        from dataclasses import replace

        return replace(self, **changes)
