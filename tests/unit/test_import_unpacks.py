"""``kiln import`` leaves its layer unpacked, from the same pass that stores the blob, as
a pull does: the tree is recorded under the layer's chain id (not yet durable, marked with
the boot id) and matches the stored blob; a first use does not unpack it again. A refused
tarball leaves no blob, no layer and no staged tree; an image for another platform is not
unpacked (the first build for it does that)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from kiln.errors import InvalidArgument
from kiln.image import open_store_image, unpack_image
from kiln.image.import_tarball import import_tarball
from kiln.ops.archives import import_image
from kiln.ops.context import open_context
from kiln.snapshot import Snapshotter
from kiln.snapshot.meta import boot_id
from kiln.snapshot.verify import verify_layer_dir
from kiln.store import Store


def _tar(entries: list[tuple[str, bytes | None, str]]) -> bytes:
    """(name, data or None for a directory, hard link target or '')."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, link in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if link:
                info.type, info.linkname = tarfile.LNKTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ROOTFS = _tar(
    [
        ("etc", None, ""),
        ("etc/hostname", b"kiln\n", ""),
        ("etc/hosts-copy", None, "etc/hostname"),
        ("bin", None, ""),
        ("bin/tool", b"\x7fELF" + b"x" * 300_000, ""),
    ]
)


@pytest.fixture
def parts(tmp_path):
    store = Store.open(str(tmp_path / "root"))
    snaps = Snapshotter(store.snapshot_root, driver="copy")
    yield store, snaps
    snaps.close()
    store.close()


def _blobs(store: Store) -> list[str]:
    return sorted(os.listdir(os.path.join(store.root, "blobs", "sha256")))


def _tmp(snaps: Snapshotter) -> list[str]:
    return os.listdir(os.path.join(snaps.root, "tmp"))


def test_import_leaves_the_layer_unpacked_as_its_blob_says(parts):
    store, snaps = parts
    rec = import_tarball(store, io.BytesIO(gzip.compress(ROOTFS)), names=["base:1"], snaps=snaps)
    img = open_store_image(store, rec.id)
    [chain_id] = rec.layers
    assert snaps.has_layer(chain_id)
    row = snaps.db.one("SELECT boot FROM layers WHERE chain_id=?", (chain_id,))
    assert row["boot"] == boot_id()  # recorded without a sync, as a pull's layers
    [fs] = snaps.layer_dirs(chain_id)
    with img.open_layer(img.layers[0]) as blob, gzip.open(blob) as tar:
        verdict = verify_layer_dir(fs, tar)
    assert verdict.problems == []
    assert verdict.diff_id == str(img.config.diff_ids[0])
    assert _tmp(snaps) == []
    inode = os.stat(fs).st_ino
    assert unpack_image(store, snaps, img) == chain_id
    assert os.stat(snaps.layer_dirs(chain_id)[0]).st_ino == inode  # not unpacked again


def test_import_without_a_snapshotter_unpacks_nothing(parts):
    store, snaps = parts
    import_tarball(store, io.BytesIO(ROOTFS), names=["base:1"])
    assert snaps.list_layers() == []


@pytest.mark.parametrize(
    "data, words",
    [
        (_tar([("a", b"x", ""), ("b", None, "../../outside")]), "outside"),
        (_tar([("a", b"x", ""), ("b", None, "not-there")]), "hard link"),
        (_tar([("a", b"x" * 5000, "")])[:2000], "truncated"),
        # a tar inside two gzips: the outer one is the tarball's compression, the inner
        # one is not a tar; the applier must not inflate what the importer already did
        (gzip.compress(gzip.compress(ROOTFS)), "tar"),
    ],
    ids=["dotdot-link", "dangling-hardlink", "truncated", "gzip-in-gzip"],
)
def test_a_refused_tarball_leaves_no_blob_layer_or_tree(parts, data, words):
    store, snaps = parts
    before = _blobs(store)
    with pytest.raises(InvalidArgument) as err:
        import_tarball(store, io.BytesIO(data), names=["bad:1"], snaps=snaps)
    assert words in str(err.value)
    assert snaps.list_layers() == []
    assert _tmp(snaps) == []
    assert _blobs(store) == before


def test_an_empty_tarball_leaves_no_layer(parts):
    store, snaps = parts
    with pytest.raises(InvalidArgument, match="empty"):
        import_tarball(store, io.BytesIO(b""), snaps=snaps)
    assert snaps.list_layers() == [] and _tmp(snaps) == []


def test_kiln_import_unpacks_for_this_host_only(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_SNAPSHOT_DRIVER", "copy")
    path = tmp_path / "rootfs.tar"
    path.write_bytes(ROOTFS)
    with open_context(str(tmp_path / "root")) as ctx:
        host = import_image(ctx, str(path), "host:1")
        foreign = import_image(ctx, str(path), "foreign:1", platform="linux/s390x")
        assert ctx.snapshots.list_layers() == list(host.layers)
        assert foreign.layers == host.layers  # the same layer: unpacked for the host image
    other = tmp_path / "other"
    with open_context(str(other)) as ctx:
        import_image(ctx, str(path), "foreign:1", platform="linux/s390x")
        assert ctx.snapshots.list_layers() == []
