"""validate_image passes on kiln's images and names the broken invariant of each corrupt one."""

from __future__ import annotations

import json

import pytest

from kiln.errors import DigestMismatch, InvalidArgument  # noqa: E402
from kiln.image import validate_image  # noqa: E402
from kiln.image.model import bytes_source  # noqa: E402
from kiln.oci import Descriptor, Digest, Manifest  # noqa: E402
from kiln.oci import media_types as mt
from kiln.oci.strict_json import canonical  # noqa: E402

pytest_plugins = ["fixtures_images"]


class Parts:
    """A busybox image's blobs, served from memory without any checking (a lying source)."""

    def __init__(self, img):
        self.config = json.loads(img.config.to_bytes())
        self.layer = img.blobs.open_blob(img.layers[0].digest).read()
        self.layer_desc = img.layers[0]

    def build(self, config=None, layer=None, manifest_type=mt.OCI_MANIFEST, **over):
        blobs: dict[Digest, bytes] = {}
        raw_config = canonical(config or self.config)
        cdesc = Descriptor(
            over.get("config_type", mt.OCI_CONFIG), Digest.of_bytes(raw_config), len(raw_config)
        )
        cdesc = cdesc.replace(**over.get("config_desc", {}))
        blobs[cdesc.digest] = raw_config
        ldesc = self.layer_desc.replace(**over.get("layer_desc", {}))
        blobs[ldesc.digest] = self.layer if layer is None else layer
        manifest = Manifest.build(manifest_type, cdesc, [ldesc])
        blobs[manifest.digest] = manifest.raw
        return bytes_source(blobs), manifest.digest


@pytest.fixture
def parts(busybox_image):
    return Parts(busybox_image)


def test_kiln_image_is_valid(busybox_image, parts):
    validate_image(busybox_image)
    validate_image(*parts.build())


def test_wrong_config_digest(parts):
    other = Digest.of_bytes(b"something else")
    src, digest = parts.build(config_desc={"digest": other})
    with pytest.raises(DigestMismatch, match="config"):
        validate_image(src, digest)


def test_wrong_config_size(parts):
    src, digest = parts.build(config_desc={"size": 5})
    with pytest.raises(DigestMismatch, match="descriptor says 5"):
        validate_image(src, digest)


def test_truncated_layer(parts):
    src, digest = parts.build(layer=parts.layer[: len(parts.layer) // 2])
    with pytest.raises(InvalidArgument, match="layer 0"):
        validate_image(src, digest)


def test_wrong_diff_id(parts):
    cfg = dict(parts.config, rootfs={"type": "layers", "diff_ids": ["sha256:" + "a" * 64]})
    src, digest = parts.build(config=cfg)
    with pytest.raises(DigestMismatch, match="diff_id"):
        validate_image(src, digest)


def test_history_mismatch(parts):
    cfg = dict(parts.config, history=parts.config["history"] + [{"created_by": "RUN x"}])
    src, digest = parts.build(config=cfg)
    with pytest.raises(InvalidArgument, match="non-empty entries"):
        validate_image(src, digest)


def test_diff_id_count_mismatch(parts):
    cfg = dict(parts.config, rootfs={"type": "layers", "diff_ids": []}, history=[])
    src, digest = parts.build(config=cfg)
    with pytest.raises(InvalidArgument, match="1 layers but the config has 0"):
        validate_image(src, digest)


def test_docker_manifest_with_oci_layers(parts):
    src, digest = parts.build(manifest_type=mt.DOCKER_MANIFEST, config_type=mt.DOCKER_CONFIG)
    with pytest.raises(InvalidArgument, match="media type"):
        validate_image(src, digest)


def test_missing_platform(parts):
    cfg = {k: v for k, v in parts.config.items() if k != "architecture"}
    src, digest = parts.build(config=cfg)
    with pytest.raises(InvalidArgument, match="architecture"):
        validate_image(src, digest)


def test_layer_not_a_tar(parts):
    import gzip

    junk = gzip.compress(b"x" * 2000, mtime=0)
    cfg = dict(
        parts.config, rootfs={"type": "layers", "diff_ids": [str(Digest.of_bytes(b"x" * 2000))]}
    )
    src, digest = parts.build(
        config=cfg, layer=junk, layer_desc={"digest": Digest.of_bytes(junk), "size": len(junk)}
    )
    with pytest.raises(InvalidArgument, match="not a valid tar"):
        validate_image(src, digest)
