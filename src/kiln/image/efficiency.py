"""How well an image's layers use their bytes (what ``dive`` shows), for ``kiln build report``.

Every layer's tar is read once, as a stream (headers only; file data is skipped). A file a
layer adds is *wasted* when a later layer replaces it (same path), deletes it (a whiteout,
an opaque directory over it, or a whiteout of a directory above it): its bytes stay in the
image but nobody sees them. ``layer_efficiency(img)`` returns, per layer, its file count,
size, biggest files and the bytes of it later layers hid; and in all the wasted bytes,
the efficiency (``1 - wasted / total``) and the paths wasting most.
"""

from __future__ import annotations

import posixpath
import tarfile
from dataclasses import field
from typing import TypedDict

from kiln.archive.compression import open_decompressed
from kiln.image.model import Image
from kiln.oci.descriptor import Descriptor
from kiln.util.lazy_dataclass import dataclass

__all__ = ["Efficiency", "LayerUse", "LayerUseRow", "WastedFile", "layer_efficiency"]

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class LayerUseRow(TypedDict):
    """One layer of ``layer_efficiency``'s answer (``LayerUse``'s fields)."""

    index: int
    digest: str
    files: int
    bytes: int
    wasted: int
    biggest: list[tuple[str, int]]
    removed: list[str]


class WastedFile(TypedDict):
    path: str
    size: int
    layer: int


class Efficiency(TypedDict):
    """``layer_efficiency``'s answer (JSON, in a build record's report)."""

    layers: list[LayerUseRow]
    total_bytes: int
    wasted_bytes: int
    efficiency: float  # 1 - wasted / total
    wasted_files: list[WastedFile]  # the 20 biggest


@dataclass
class LayerUse:
    index: int
    digest: str
    files: int = 0
    bytes: int = 0  # the regular files' sizes
    wasted: int = 0  # bytes of this layer's files that later layers hid
    biggest: list[tuple[str, int]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # what this layer deletes (first few)

    def row(self) -> LayerUseRow:
        return {
            "index": self.index,
            "digest": self.digest,
            "files": self.files,
            "bytes": self.bytes,
            "wasted": self.wasted,
            "biggest": self.biggest,
            "removed": self.removed,
        }


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return posixpath.normpath("/" + name).lstrip("/")


def _layer_entries(img: Image, desc: Descriptor) -> tuple[dict[str, int], list[str], list[str]]:
    """(regular files {path: size}, whiteouts [path], opaque dirs [path]) of one layer."""
    files: dict[str, int] = {}
    whiteouts: list[str] = []
    opaque: list[str] = []
    with (
        img.open_layer(desc) as raw,
        open_decompressed(raw) as plain,
        tarfile.open(fileobj=plain, mode="r|") as tar,
    ):
        for m in tar:
            path = _norm(m.name)
            base = posixpath.basename(path)
            parent = posixpath.dirname(path)
            if base == OPAQUE:
                opaque.append(parent)
            elif base.startswith(WHITEOUT):
                whiteouts.append(posixpath.join(parent, base[len(WHITEOUT) :]))
            elif m.isreg():
                files[path] = m.size
            else:
                files.pop(path, None)  # a link or directory replaces a file of this layer
    return files, whiteouts, opaque


def _under(path: str, directory: str) -> bool:
    return directory == "" or path == directory or path.startswith(directory + "/")


def layer_efficiency(img: Image, *, top: int = 5) -> Efficiency:
    """See the module docstring; ``img`` is any ``kiln.image`` Image."""
    uses: list[LayerUse] = []
    # path -> (layer index, size) of the file visible so far
    visible: dict[str, tuple[int, int]] = {}
    wasted_paths: list[tuple[int, str, int]] = []  # (size, path, layer)
    for index, desc in enumerate(img.manifest.layers):
        files, whiteouts, opaque = _layer_entries(img, desc)
        use = LayerUse(index=index, digest=str(desc.digest), files=len(files),
                       bytes=sum(files.values()))  # fmt: skip
        use.biggest = sorted(files.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        use.removed = (whiteouts + [d + "/*" for d in opaque])[:top]
        hidden: list[str] = []
        for gone in whiteouts:
            hidden += [p for p in visible if _under(p, gone)]
        for directory in opaque:
            hidden += [p for p in visible if p != directory and _under(p, directory)]
        hidden += [p for p in files if p in visible]
        for path in dict.fromkeys(hidden):
            layer, size = visible.pop(path)
            uses[layer].wasted += size
            if size:
                wasted_paths.append((size, path, layer))
        for path, size in files.items():
            visible[path] = (index, size)
        uses.append(use)
    total = sum(u.bytes for u in uses)
    wasted = sum(u.wasted for u in uses)
    wasted_paths.sort(key=lambda t: (-t[0], t[1]))
    return {
        "layers": [u.row() for u in uses],
        "total_bytes": total,
        "wasted_bytes": wasted,
        "efficiency": 1.0 if total == 0 else round(1 - wasted / total, 4),
        "wasted_files": [{"path": p, "size": s, "layer": i} for s, p, i in wasted_paths[:20]],
    }
