"""``kiln load`` (docker-archive, oci-archive) leaves the layers it stores unpacked, from the
same pass that stores each blob, as a pull does: each tree matches its blob and is
recorded under its chain id, and a first use unpacks nothing again. A refused archive
(a layer not matching its digest or its diff_id, a layer that is not a tar) leaves no
blob, no layer and no staged tree; an image for another platform is not unpacked."""

from __future__ import annotations

import gzip
import io
import os

import pytest

import hostile_images as hi
from kiln.errors import DigestMismatch, InvalidArgument
from kiln.image import open_store_image, unpack_image
from kiln.ops.archives import load
from kiln.ops.context import Context, open_context
from kiln.snapshot.verify import verify_layer_dir

BASE = hi.plain_layer("etc/hostname", b"kiln\n" * 1000)
TOP = gzip.compress(hi.plain_layer("app/run.sh", b"#!/bin/sh\necho hi\n"))


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_SNAPSHOT_DRIVER", "copy")
    with open_context(str(tmp_path / "root")) as ctx:
        yield ctx


def _load(ctx: Context, tmp_path, archive: bytes):
    path = tmp_path / "archive.tar"
    path.write_bytes(archive)
    return load(ctx, str(path))


def _state(ctx: Context) -> tuple[list[str], list[str], list[str]]:
    snaps = ctx.snapshots
    blobs = sorted(os.listdir(os.path.join(ctx.store.root, "blobs", "sha256")))
    return blobs, snaps.list_layers(), os.listdir(os.path.join(snaps.root, "tmp"))


@pytest.mark.parametrize("kind", ["docker-archive", "oci-archive"])
def test_load_leaves_every_layer_unpacked_as_its_blob_says(ctx, tmp_path, kind):
    img = hi.image([BASE, TOP], docker=kind == "docker-archive")
    archive = hi.docker_archive(img) if kind == "docker-archive" else hi.oci_archive(img)
    [loaded] = _load(ctx, tmp_path, archive).images
    stored = open_store_image(ctx.store, loaded.id)
    snaps = ctx.snapshots
    chains = list(stored.record.layers)
    assert snaps.list_layers() == chains
    for chain_id, desc in zip(chains, stored.layers, strict=True):
        [fs, *_] = snaps.layer_dirs(chain_id)
        with stored.open_layer(desc) as blob:
            raw = blob.read()
        tar = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        assert verify_layer_dir(fs, io.BytesIO(tar)).problems == []
    assert _state(ctx)[2] == []  # no staged tree left behind
    inodes = [os.stat(snaps.layer_dirs(c)[0]).st_ino for c in chains]
    assert unpack_image(ctx.store, snaps, stored) == chains[-1]
    assert [os.stat(snaps.layer_dirs(c)[0]).st_ino for c in chains] == inodes


def _wrong_blob(img: hi.Image) -> bytes:
    """The top layer's member holds other bytes than its digest names."""
    name = hi.sha(img.layers[1])[7:]
    return hi.oci_archive(img, hook=hi.replace(name, ("", hi.REG, gzip.compress(b"x" * 100))))


@pytest.mark.parametrize(
    "make, error, words",
    [
        (
            lambda: hi.oci_archive(hi.image([BASE, TOP], diff_ids=[hi.sha(BASE), hi.sha(BASE)])),
            DigestMismatch,
            "config says",
        ),  # fmt: skip
        (lambda: _wrong_blob(hi.image([BASE, TOP])), DigestMismatch, "digest"),
        (
            lambda: hi.oci_archive(hi.image([BASE, gzip.compress(b"not a tar\n" * 300)])),
            InvalidArgument,
            "tar",
        ),  # fmt: skip
    ],
    ids=["diff-id-mismatch", "blob-not-its-digest", "not-a-tar"],
)
def test_a_refused_archive_leaves_no_blob_layer_or_tree(ctx, tmp_path, make, error, words):
    before = _state(ctx)
    with pytest.raises(error) as err:
        _load(ctx, tmp_path, make())
    assert words in str(err.value).lower()
    assert _state(ctx) == before


def test_an_image_for_another_platform_is_not_unpacked(ctx, tmp_path):
    img = hi.image([BASE, TOP], config_extra={"architecture": "s390x"})
    _load(ctx, tmp_path, hi.oci_archive(img))
    assert ctx.snapshots.list_layers() == []
