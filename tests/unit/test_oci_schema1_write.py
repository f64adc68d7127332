"""kiln.oci.schema1_write: schema 1 manifests built from an image config, signed, and
read back by kiln's schema 1 reader to the same layers, config and history."""

from __future__ import annotations

import gzip
import json
import re

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kiln.errors import InvalidArgument
from kiln.oci import Descriptor, Digest, History, ImageConfig, RuntimeConfig
from kiln.oci import media_types as mt
from kiln.oci.schema1 import Schema1Manifest, payload
from kiln.oci.schema1_write import (
    EMPTY_GZIP_LAYER,
    EMPTY_GZIP_LAYER_DIGEST,
    build,
    key_id,
    sign,
    verify,
)

A, B = Digest.of_bytes(b"layer a"), Digest.of_bytes(b"layer b")
DIFF_A, DIFF_B = Digest.of_bytes(b"tar a"), Digest.of_bytes(b"tar b")


def config(history=None) -> ImageConfig:
    c = ImageConfig(
        created="2024-01-02T03:04:05Z",
        architecture="arm64",
        os="linux",
        config=RuntimeConfig(env=("A=1",), cmd=("/bin/sh", "-c", "echo <&>")),
        diff_ids=(str(DIFF_A), str(DIFF_B)),
        history=tuple(
            history
            if history is not None
            else (
                History(created="2024-01-01T00:00:00Z", created_by="ADD a /"),
                History(created="2024-01-01T00:00:01Z", created_by="ENV A=1", empty_layer=True),
                History(created="2024-01-01T00:00:02Z", created_by="RUN b", author="me"),
                # the top entry is the config itself: its time is the config's, as a
                # build leaves them
                History(created="2024-01-02T03:04:05Z", created_by="CMD x", empty_layer=True),
            )
        ),
    )
    return ImageConfig.parse(c.to_bytes())


LAYERS = [Descriptor(mt.DOCKER_LAYER_GZIP, A, 10), Descriptor(mt.DOCKER_LAYER_GZIP, B, 20)]


def test_empty_layer_is_dockers_gzipped_empty_tar():
    assert gzip.decompress(EMPTY_GZIP_LAYER) == bytes(1024)
    assert str(EMPTY_GZIP_LAYER_DIGEST) == (
        "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
    )


def test_built_manifest_reads_back_to_the_same_image():
    cfg = config()
    unsigned, uses_empty = build(cfg, LAYERS, "team/app", "1")
    assert uses_empty and unsigned.startswith(b'{\n   "schemaVersion": 1,\n   "name": "team/app"')
    signed = sign(unsigned, ec.generate_private_key(ec.SECP256R1()))
    verify(signed)
    assert payload(signed) == unsigned  # the digest registries give is the payload's
    s1 = Schema1Manifest.parse(signed)
    assert s1.media_type == mt.DOCKER_SCHEMA1_SIGNED and (s1.name, s1.tag) == ("team/app", "1")
    assert s1.layer_digests == (A, B)
    back = s1.to_config([str(DIFF_A), str(DIFF_B)])
    assert back.history == cfg.history
    assert back.config.env == cfg.config.env and back.config.cmd == cfg.config.cmd
    assert back.architecture == "arm64" and back.diff_ids == cfg.diff_ids
    # the same image gives the same payload (chained IDs, no clock in it)
    assert build(cfg, LAYERS, "team/app", "1")[0] == unsigned


def test_tampering_and_foreign_keys_are_caught():
    key = ec.generate_private_key(ec.SECP256R1())
    signed = sign(build(config(), LAYERS, "x", "1")[0], key)
    with pytest.raises(InvalidArgument, match="does not verify"):
        verify(signed.replace(b'"arm64"', b'"amd64"', 1))
    kid = json.loads(signed)["signatures"][0]["header"]["jwk"]["kid"]
    other = key_id(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(InvalidArgument, match="key ID does not match"):
        verify(signed.replace(kid.encode(), other.encode()))
    with pytest.raises(InvalidArgument):
        verify(signed[: signed.index(b',\n   "signatures"')] + b"\n}")  # unsigned
    assert re.fullmatch(r"([A-Z2-7]{4}:){11}[A-Z2-7]{4}", key_id(key.public_key()))


def test_history_that_does_not_match_the_layers_is_refused():
    with pytest.raises(InvalidArgument, match="history records 1 layer steps"):
        build(config([History(created_by="ADD a /")]), LAYERS, "x", "1")
    # no history at all: one entry per layer, as other tools fill it in
    unsigned, uses_empty = build(config([]), LAYERS, "x", "1")
    assert not uses_empty and len(json.loads(unsigned)["fsLayers"]) == 2
