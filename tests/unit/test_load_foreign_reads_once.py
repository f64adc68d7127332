"""A load of another platform's image (nothing unpacked) reads each layer once: the layer
is checked as validation checks it while it is stored, so validating the image does not
open the stored blob again; a broken layer is still refused, and leaves no blob."""

from __future__ import annotations

import gzip

import pytest

import hostile_images as hi
from kiln.errors import InvalidArgument
from kiln.oci import Platform
from kiln.ops import archives
from kiln.ops.context import open_context
from kiln.ops.store_copy import unpack_into

FOREIGN = "s390x" if Platform.host().architecture != "s390x" else "arm64"


def _opened_layers(ctx, layer_digests) -> list[str]:
    opened: list[str] = []
    real = ctx.store.open_blob

    def open_blob(digest, *a, **kw):
        if str(digest) in layer_digests:
            opened.append(str(digest))
        return real(digest, *a, **kw)

    ctx.store.open_blob = open_blob
    return opened


@pytest.mark.parametrize("arch", [FOREIGN, None])
def test_a_load_reads_each_layer_once(tmp_path, monkeypatch, arch):
    monkeypatch.setenv("KILN_SNAPSHOT_DRIVER", "copy")
    layers = [gzip.compress(hi.plain_layer("a", b"a" * 5000)), hi.plain_layer("b")]
    extra = {"architecture": arch} if arch else {}
    img = hi.image(layers, config_extra=extra)
    archive = tmp_path / "img.tar"
    archive.write_bytes(hi.oci_archive(img))
    with open_context(str(tmp_path / "root")) as ctx:
        foreign = unpack_into(ctx, Platform.parse(f"linux/{arch}")) is None if arch else False
        assert foreign is bool(arch)
        opened = _opened_layers(ctx, {hi.sha(b) for b in layers})
        res = archives.load(ctx, str(archive))
        (image_id,) = [i.id for i in res.images]
        assert ctx.store.get_image(image_id)
        assert opened == []  # validated without reading a stored layer again


def test_a_broken_foreign_layer_is_refused_and_leaves_no_blob(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_SNAPSHOT_DRIVER", "copy")
    broken = gzip.compress(hi.plain_layer("a"))[:-12]  # a truncated gzip stream
    img = hi.image([broken], diff_ids=[hi.sha(hi.plain_layer("a"))],
                   config_extra={"architecture": FOREIGN})  # fmt: skip
    archive = tmp_path / "img.tar"
    archive.write_bytes(hi.oci_archive(img))
    with open_context(str(tmp_path / "root")) as ctx:
        with pytest.raises(InvalidArgument, match="truncated") as err:
            archives.load(ctx, str(archive))
        assert "Traceback" not in str(err.value)
        assert not ctx.store.has_blob(hi.sha(broken))
