"""Plain records the store keeps: images, layers, working containers, GC results."""

from __future__ import annotations

from dataclasses import field

from kiln.util.lazy_dataclass import dataclass


@dataclass
class ImageRecord:
    """One image, keyed by its config digest (the image ID, as in Docker and podman)."""

    id: str  # "sha256:<config digest hex>"
    manifest_digest: str  # "sha256:..."
    manifest_media_type: str
    config_digest: str  # == id
    created: str  # RFC 3339, from the config
    size: int  # sum of uncompressed layer sizes (podman's Size)
    layers: list[str]  # chain ids, bottom first
    platform: str = ""  # "linux/amd64"
    names: list[str] = field(default_factory=list)  # filled by get/list/resolve
    repo_digests: list[str] = field(default_factory=list)
    added: float = 0.0  # when the store learnt of it; 0.0 -> now on first put
    labels: dict[str, str] | None = None  # the config's labels; None: not recorded (old store)
    # the manifest's layer blob digests, bottom first (parallel to ``layers``): what GC keeps
    # for this image. Empty on put: read from the manifest blob in the store
    layer_blobs: list[str] = field(default_factory=list)


@dataclass
class IndexRecord:
    """A manifest list or image index kept by name beside images (``kiln.store.indexes``).

    ``id`` stays the same while the list is edited (podman's list IDs do too); ``digest``
    names the stored index blob of its current content.
    """

    id: str  # "sha256:<64 hex>", chosen when the list is created
    digest: str  # "sha256:..." of the raw index bytes (a blob in the store)
    media_type: str  # OCI image index or Docker manifest list
    created: str  # RFC 3339
    manifests: list[str] = field(default_factory=list)  # child manifest digests, in order
    names: list[str] = field(default_factory=list)
    added: float = 0.0
    size: int = 0  # bytes of the index document


@dataclass
class LayerRecord:
    """One layer of some image chain; ``chain_id`` identifies the whole chain below it.

    ``blob_digest``/``media_type``/``size`` describe the encoding last stored for the chain;
    other images may hold the same chain as another blob (their ``ImageRecord.layer_blobs``
    say which). GC and every reader use the image's own manifest, never this row's blob.
    """

    chain_id: str
    diff_id: str
    parent: str | None
    blob_digest: str
    media_type: str
    size: int  # compressed (blob) size
    uncompressed_size: int


@dataclass
class ContainerRecord:
    """A working container; ``state`` is the container package's JSON, opaque here."""

    id: str  # 64 hex
    name: str
    image_id: str | None  # None for scratch
    state: dict
    created: float
    snapshot_key: str | None = None  # the active snapshot it holds (kept by GC)


@dataclass(frozen=True)
class GCResult:
    """What one garbage collection removed."""

    blobs_removed: int
    bytes_freed: int  # everything removed from disk: blobs, unpacked layers, snapshots
    snapshots_removed: int = 0  # unpacked layers and active snapshots the sweepers removed
    snapshot_bytes_freed: int = 0  # the part of bytes_freed that was snapshots
