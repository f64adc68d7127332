"""``kiln load`` reads each layer once: the pass that stores and unpacks a layer also checks
it as validation would (digest, compression as its media type says, a tar whose members
``check_tar`` takes, diff_id), so validating the image does not read it again. A layer
that pass cannot vouch for is still read by validation and refused with its message."""

from __future__ import annotations

import gzip
import os
from collections import Counter

import pytest

import hostile_images as hi
from archive_corpus import tar_of
from kiln.errors import InvalidArgument
from kiln.ops.archives import load
from kiln.ops.context import Context, open_context

BASE = hi.plain_layer("etc/hostname", b"kiln\n" * 1000)
TOP = gzip.compress(hi.plain_layer("app/run.sh", b"#!/bin/sh\necho hi\n"))


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_SNAPSHOT_DRIVER", "copy")
    with open_context(str(tmp_path / "root")) as ctx:
        yield ctx


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
