"""``kiln load`` (docker-archive, oci-archive) leaves the layers it stores unpacked, from the
same pass that stores each blob, as a pull does: each tree matches its blob and is
recorded under its chain id, and a first use unpacks nothing again; validating the image
reads no layer that pass already checked. A refused archive
(a layer not matching its digest or its diff_id, a layer that is not a tar) leaves no
blob, no layer and no staged tree; an image for another platform is not unpacked."""

from __future__ import annotations

import gzip
import io
import os
from collections import Counter

import pytest

import hostile_images as hi
from archive_corpus import tar_of
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


# -- each layer is read once: the pass that stores and unpacks it checks it as validation
# would, so validating the image does not read it again; one that pass cannot vouch for is
# read by validation and refused with its message


def _load_counting(ctx: Context, tmp_path, monkeypatch, archive: bytes) -> Counter:
    """Load ``archive``; how often each stored blob was opened meanwhile, by digest."""
    opened: Counter = Counter()
    real = ctx.store.open_blob

    def open_blob(digest):
        opened[str(digest)] += 1
        return real(digest)

    monkeypatch.setattr(ctx.store, "open_blob", open_blob)
    path = tmp_path / "archive.tar"
    path.write_bytes(archive)
    load(ctx, str(path))
    return opened


def _blobs(ctx: Context) -> list[str]:
    return sorted(os.listdir(os.path.join(ctx.store.root, "blobs", "sha256")))


@pytest.mark.parametrize("kind", ["docker-archive", "oci-archive"])
def test_a_loaded_layer_is_read_once(ctx, tmp_path, monkeypatch, kind):
    img = hi.image([BASE, TOP], docker=kind == "docker-archive")
    archive = hi.docker_archive(img) if kind == "docker-archive" else hi.oci_archive(img)
    opened = _load_counting(ctx, tmp_path, monkeypatch, archive)
    layers = [hi.sha(b) for b in img.layers]
    assert ctx.snapshots.list_layers()  # unpacked on the way in
    assert {d: opened[d] for d in layers} == {d: 0 for d in layers}


def test_a_layer_compressed_otherwise_than_its_media_type_says_is_still_refused(
    ctx, tmp_path, monkeypatch
):
    img = hi.image([BASE, TOP])
    img.layer_types[1] = hi.OCI_LAYER  # gzip bytes labelled an uncompressed tar
    before = _blobs(ctx)
    with pytest.raises(InvalidArgument) as err:
        _load_counting(ctx, tmp_path, monkeypatch, hi.oci_archive(img))
    assert "invalid image: layer 1" in str(err.value)
    assert _blobs(ctx) == before


def test_a_layer_check_tar_refuses_is_still_refused(ctx, tmp_path, monkeypatch):
    # a hard link to a file of the layer below: not in this layer's archive
    below = tar_of(hi.hardlink_member("etc/hostname2", "etc/hostname"))
    img = hi.image([BASE, below])
    before = _blobs(ctx)
    with pytest.raises(InvalidArgument) as err:
        _load_counting(ctx, tmp_path, monkeypatch, hi.oci_archive(img))
    assert "hard link 'etc/hostname2'" in str(err.value)
    assert _blobs(ctx) == before
