"""OCI layout, oci-archive and docker-archive transports with kiln on both ends."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

pytest.register_assert_rewrite("fixtures_images")
from fixtures_images import save_docker_archive, save_oci_archive, save_oci_layout  # noqa: E402
from kiln.errors import DigestMismatch, InvalidArgument, NotFound  # noqa: E402
from kiln.image import copy_image, open_store_image, validate_image  # noqa: E402
from kiln.image.transports import (  # noqa: E402
    docker_archive_images,
    open_docker_archive,
    open_oci_archive,
    open_oci_layout,
    write_docker_archive,
)
from kiln.oci import media_types as mt  # noqa: E402
from kiln.store import Store  # noqa: E402

pytest_plugins = ["fixtures_images"]


def _store(tmp_path, name):
    return Store.open(str(tmp_path / name))


def test_oci_archive_round_trip_keeps_digests_and_bytes(busybox_image, tmp_path):
    first = tmp_path / "a.tar"
    res = save_oci_archive(busybox_image, str(first))
    assert res.manifest_digest == busybox_image.manifest_digest
    src = open_oci_archive(str(first), "busybox:latest")
    validate_image(src)
    other = _store(tmp_path, "s2")
    copied = copy_image(src, other, ["busybox:latest"])
    assert copied.record.id == busybox_image.id
    assert copied.record.manifest_digest == str(busybox_image.manifest_digest)
    again = open_store_image(other, "busybox")
    validate_image(again)
    second = tmp_path / "b.tar"
    save_oci_archive(again, str(second))
    assert first.read_bytes() == second.read_bytes()  # deterministic archive


def test_docker_archive_round_trip_keeps_image_id(busybox_image, tmp_path):
    path = tmp_path / "d.tar"
    save_docker_archive(busybox_image, str(path))
    with tarfile.open(path) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    assert manifest[0]["Config"] == busybox_image.id.removeprefix("sha256:") + ".json"
    assert "repositories" in names
    src = open_docker_archive(str(path), "busybox:latest")
    validate_image(src)
    assert src.id == busybox_image.id
    assert src.layers[0].media_type == mt.DOCKER_LAYER  # uncompressed: digest == diff_id
    assert str(src.layers[0].digest) == src.config.diff_ids[0]
    other = _store(tmp_path, "s2")
    loaded = copy_image(src, other, ["busybox:latest"]).record
    assert loaded.id == busybox_image.id
    assert loaded.size == busybox_image.record.size
    # save what was loaded and load it again: the synthesised manifest digest is stable
    path2 = tmp_path / "d2.tar"
    save_docker_archive(open_store_image(other, "busybox"), str(path2))
    assert open_docker_archive(str(path2)).manifest_digest == src.manifest_digest
    assert path.read_bytes() == path2.read_bytes()


def test_docker_archive_several_images(busybox_image, kiln_store, tmp_path):
    from kiln.image.import_tarball import import_tarball

    tarball = io.BytesIO()
    with tarfile.open(fileobj=tarball, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    tarball.seek(0)
    rec = import_tarball(kiln_store, tarball, ['CMD ["/hello"]'], names=["hello:1"])
    hello = open_store_image(kiln_store, rec.id)
    path = str(tmp_path / "multi.tar")
    write_docker_archive(path, [(busybox_image, ["busybox:latest", "bb:2"]), (hello, ["hello:1"])])
    images = docker_archive_images(path)
    assert [i.names for i in images] == [("busybox:latest", "bb:2"), ("hello:1",)]
    assert open_docker_archive(path, "docker.io/library/hello:1").id == rec.id
    assert open_docker_archive(path, "@1").id == rec.id
    with pytest.raises(InvalidArgument, match="say which one"):
        open_docker_archive(path)
    with pytest.raises(NotFound, match="nope"):
        open_docker_archive(path, "nope:1")


def test_legacy_docker_layout_with_symlinked_layers(busybox_image, tmp_path):
    """docker save before 25: <id>/layer.tar, identical layers as symlinks."""
    config = busybox_image.config.to_bytes()
    layer = busybox_image.blobs.open_blob(busybox_image.layers[0].digest)
    from kiln.archive.compression import open_decompressed

    plain = open_decompressed(layer).read()
    cfg = json.loads(config)
    path = tmp_path / "legacy.tar"
    with tarfile.open(path, "w") as tar:

        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("aaaa/layer.tar", plain)
        link = tarfile.TarInfo("bbbb/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../aaaa/layer.tar"
        tar.addfile(link)
        cfg2 = dict(cfg, rootfs={"type": "layers", "diff_ids": cfg["rootfs"]["diff_ids"] * 2})
        cfg2["history"] = cfg["history"] * 2
        raw2 = json.dumps(cfg2).encode()
        add("cfg.json", raw2)
        add(
            "manifest.json",
            json.dumps(
                [
                    {
                        "Config": "cfg.json",
                        "RepoTags": ["two:1"],
                        "Layers": ["aaaa/layer.tar", "bbbb/layer.tar"],
                    }
                ]
            ).encode(),
        )
    img = open_docker_archive(str(path))
    validate_image(img)
    assert len(img.layers) == 2 and img.layers[0] == img.layers[1]


def test_conversion_and_recompression_keep_diff_ids(busybox_image, tmp_path):
    layout = str(tmp_path / "layout")
    for fmt, comp in (("docker", "zstd"), ("oci", "none"), ("docker", "gzip"), ("oci", "zstd")):
        res = save_oci_layout(
            busybox_image, layout, [f"{fmt}-{comp}"], image_format=fmt, compression=comp
        )
        img = open_oci_layout(layout, f"{fmt}-{comp}")
        validate_image(img)
        assert img.manifest.media_type == mt.manifest_type_for(fmt)
        assert img.layers[0].media_type == mt.layer_media_type(fmt, comp)
        assert img.config.diff_ids == busybox_image.config.diff_ids
        assert res.config_digest == busybox_image.manifest.config.digest
    # and back into a store as oci+gzip again: same layer blob bytes as the original (determinism)
    other = _store(tmp_path, "s2")
    back = copy_image(
        open_oci_layout(layout, "oci-zstd"), other, [], image_format="oci", compression="gzip"
    )
    assert back.manifest_digest == busybox_image.manifest_digest


def test_layout_names(busybox_image, tmp_path):
    layout = str(tmp_path / "layout")
    save_oci_layout(busybox_image, layout, ["a", "b"])
    assert open_oci_layout(layout, "a").id == busybox_image.id
    with pytest.raises(InvalidArgument, match="say which one"):
        open_oci_layout(layout)
    with pytest.raises(NotFound, match='no image named "c"'):
        open_oci_layout(layout, "c")
    save_oci_layout(busybox_image, layout, ["a"], image_format="docker")  # moves the name
    idx = json.loads((tmp_path / "layout" / "index.json").read_bytes())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in idx["manifests"]] == [
        "b",
        "a",
    ]
    assert open_oci_layout(layout, "a").manifest.is_docker


def _rewrite_tar(src, dst, mutate):
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin:
            data = tin.extractfile(member).read() if member.isreg() else None
            member, data = mutate(member, data)
            tout.addfile(member, io.BytesIO(data) if data is not None else None)


def test_hostile_oci_archive_member_path_refused(busybox_image, tmp_path):
    good = tmp_path / "good.tar"
    save_oci_archive(busybox_image, str(good))

    def escape(member, data):
        if member.name == "index.json":
            member.name = "../index.json"
        return member, data

    _rewrite_tar(good, tmp_path / "bad.tar", escape)
    with pytest.raises(InvalidArgument, match="outside the archive"):
        open_oci_archive(str(tmp_path / "bad.tar"))


def test_oci_archive_blob_not_matching_digest_refused(busybox_image, tmp_path):
    good = tmp_path / "good.tar"
    save_oci_archive(busybox_image, str(good))
    layer_hex = busybox_image.layers[0].digest.hex

    def corrupt(member, data):
        if member.name.endswith(layer_hex):
            data = data[:-1] + bytes([data[-1] ^ 1])
        return member, data

    _rewrite_tar(good, tmp_path / "bad.tar", corrupt)
    src = open_oci_archive(str(tmp_path / "bad.tar"))
    with pytest.raises(DigestMismatch):
        copy_image(src, _store(tmp_path, "s2"), ["x"])
    with pytest.raises(InvalidArgument):
        validate_image(src)


def test_a_held_layer_claimed_under_another_diff_id_is_refused(busybox_image, kiln_store, tmp_path):
    """The store holds busybox's layer, so a copy skips its bytes: an image (a hostile
    cache entry, a pull) naming that blob under another diff_id must still be refused,
    not registered with a layer that does not unpack to what its config says."""
    from kiln.image.model import SourceImage
    from kiln.oci.descriptor import Descriptor
    from kiln.oci.digest import Digest
    from kiln.oci.manifest import Manifest
    from kiln.store.oci_layout import OCILayout

    save_oci_layout(busybox_image, str(tmp_path / "layout"))
    layout = OCILayout(str(tmp_path / "layout"))
    config = json.loads(busybox_image.config.raw)
    config["rootfs"]["diff_ids"] = ["sha256:" + "ab" * 32]  # another layer's, say
    raw = json.dumps(config).encode()
    config_desc = Descriptor(mt.OCI_CONFIG, Digest.of_bytes(raw), len(raw))
    layout.put_blob(config_desc, io.BytesIO(raw))
    forged = SourceImage(layout, Manifest.build(mt.OCI_MANIFEST, config_desc, busybox_image.layers))
    before = {r.id for r in kiln_store.list_images()}
    with pytest.raises(DigestMismatch, match="but the image config says sha256:abab"):
        copy_image(forged, kiln_store, ["forged:1"])
    assert {r.id for r in kiln_store.list_images()} == before
    # the honest image copies as before (its layer is vouched for by the store's records)
    assert copy_image(busybox_image, kiln_store, ["again:1"]).image_id == busybox_image.id


def test_compressed_oci_archive_is_read(busybox_image, tmp_path):
    import gzip

    plain = tmp_path / "a.tar"
    save_oci_archive(busybox_image, str(plain))
    gz = tmp_path / "a.tar.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    img = open_oci_archive(str(gz), "busybox:latest", tmp_dir=str(tmp_path))
    validate_image(img)
    assert img.manifest_digest == busybox_image.manifest_digest


def test_failed_write_leaves_no_archive(busybox_image, tmp_path):
    from kiln.store.oci_layout import OCIArchiveWriter

    path = tmp_path / "x.tar"
    with pytest.raises(RuntimeError), OCIArchiveWriter(str(path)) as w:
        copy_image(busybox_image, w, ["x"])
        raise RuntimeError("boom")
    assert [n for n in os.listdir(tmp_path) if n != "kiln-root"] == []


def _archive_leftovers(tmp_path):
    return [n for n in os.listdir(tmp_path) if n not in ("kiln-root", "s2")]


def test_docker_archive_save_inflates_in_one_pass_with_the_recorded_size(busybox_image, tmp_path):
    layer = busybox_image.layers[0]
    size = busybox_image.uncompressed_size(layer)
    assert size and size > layer.size  # the store records the tar size: nothing is spooled
    path = tmp_path / "d.tar"
    write_docker_archive(str(path), [(busybox_image, ["busybox:latest"])])
    with tarfile.open(path) as tar:
        member = tar.getmember(busybox_image.config.diff_ids[0].removeprefix("sha256:") + ".tar")
    assert member.size == size


def test_docker_archive_save_refuses_a_layer_not_matching_its_diff_id(busybox_image, tmp_path):
    import gzip

    layer = busybox_image.layers[0]
    blob = busybox_image.store.blob_path(layer.digest)
    size = busybox_image.uncompressed_size(layer)
    os.chmod(blob, 0o644)
    with open(blob, "wb") as f:  # same size, other bytes: only the diff_id check sees it
        f.write(gzip.compress(os.urandom(size)))
    path = tmp_path / "d.tar"
    with pytest.raises(DigestMismatch, match="image config says"):
        write_docker_archive(str(path), [(busybox_image, ["busybox:latest"])])
    assert _archive_leftovers(tmp_path) == []


def test_docker_archive_save_refuses_a_wrong_recorded_size(busybox_image, tmp_path):
    store = busybox_image.store
    chain = busybox_image.record.layers[0]
    with store.db.transaction() as conn:
        conn.execute("UPDATE layers SET uncompressed_size=uncompressed_size-512 WHERE chain_id=?",
                     (chain,))  # fmt: skip
    path = tmp_path / "d.tar"
    with pytest.raises(DigestMismatch, match="recorded"):
        write_docker_archive(str(path), [(busybox_image, ["busybox:latest"])])
    assert _archive_leftovers(tmp_path) == []


def test_docker_archive_streamed_to_a_stream_is_cut_off_by_a_bad_layer(busybox_image, tmp_path):
    import gzip

    from kiln.store.docker_archive import DockerArchiveWriter

    path = tmp_path / "d.tar"
    write_docker_archive(str(path), [(busybox_image, ["busybox:latest"])])
    good = path.read_bytes()
    buf = io.BytesIO()
    write_docker_archive(buf, [(busybox_image, ["busybox:latest"])])
    assert buf.getvalue() == good  # the same bytes, streamed
    layer = busybox_image.layers[0]
    blob = busybox_image.store.blob_path(layer.digest)
    os.chmod(blob, 0o644)
    with open(blob, "wb") as f:
        f.write(gzip.compress(os.urandom(busybox_image.uncompressed_size(layer))))
    buf = io.BytesIO()
    writer = DockerArchiveWriter(buf)
    with pytest.raises(DigestMismatch):
        copy_image(busybox_image, writer, ["busybox:latest"])
    with pytest.raises(InvalidArgument, match="cut off"):
        writer.commit()  # no end-of-archive blocks after a broken member
    writer.abort()
    assert not buf.getvalue().endswith(b"\0" * 1024)


def _image_dir_with_odd_layer(busybox_image, tmp_path, kind: str, oci: bool):
    """busybox as a dir: image (or an OCI layout) whose layer file is ``kind``: a FIFO no
    one writes, a link to /dev/zero, a link to the real layer outside it, a directory."""
    from kiln.image.transports.directory import DirImageDir

    path = tmp_path / ("layout" if oci else "dir")
    if oci:
        save_oci_layout(busybox_image, str(path))
        layer = path / "blobs" / "sha256" / busybox_image.layers[0].digest.hex
    else:
        copy_image(busybox_image, DirImageDir(str(path), create=True))
        layer = path / busybox_image.layers[0].digest.hex
    outside = tmp_path / "layer-outside"
    os.replace(layer, outside)
    if kind == "fifo":
        os.mkfifo(layer)
    elif kind == "zero":
        layer.symlink_to("/dev/zero")
    elif kind == "outside":
        layer.symlink_to(outside)
    else:
        layer.mkdir()
    return path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("oci", [False, True], ids=["dir", "oci-layout"])
@pytest.mark.parametrize(
    ("kind", "said"),
    [("fifo", "is a FIFO"), ("zero", "is a symbolic link"), ("outside", "is a symbolic link"),
     ("dir", "is a directory")],
)  # fmt: skip
def test_an_image_directory_whose_layer_is_no_file_is_refused(
    busybox_image, tmp_path, kind, said, oci
):
    """A layer file that is no regular file is refused at once, naming it: a FIFO blocked
    the load for ever, a link to /dev/zero was read until the size check, a directory was
    an unexpected IsADirectoryError; a link out of the directory read a file outside it."""
    from kiln.image.transports.directory import open_dir_image

    path = _image_dir_with_odd_layer(busybox_image, tmp_path, kind, oci)
    dest = _store(tmp_path, "dest")
    with pytest.raises(InvalidArgument, match=said) as caught:
        src = open_oci_layout(str(path)) if oci else open_dir_image(str(path))
        copy_image(src, dest, ["odd:1"])
    assert busybox_image.layers[0].digest.hex in str(caught.value)
    assert dest.list_images() == []


def _tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_docker_archive_holding_a_layer_once_xz_and_once_plain_loads(tmp_path):
    """Two images of one docker-archive share a layer, stored xz-compressed for the first
    and as a plain tar for the second: both load (the second's plain member was read as
    xz: 'xz data is corrupt or truncated')."""
    import hashlib
    import lzma

    layer = _tar_of({"a.txt": b"shared\n"})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    files, entries = {}, []
    for n, member in ((1, "xz/layer.tar"), (2, "plain/layer.tar")):
        config = json.dumps({
            "architecture": "amd64", "os": "linux", "config": {"Env": [f"N={n}"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }).encode()  # fmt: skip
        name = f"{hashlib.sha256(config).hexdigest()}.json"
        files[name] = config
        entries.append({"Config": name, "RepoTags": [f"shared/n{n}:1"], "Layers": [member]})
    files["xz/layer.tar"] = lzma.compress(layer)
    files["plain/layer.tar"] = layer
    files["manifest.json"] = json.dumps(entries).encode()
    (tmp_path / "two.tar").write_bytes(_tar_of(files))
    dest = _store(tmp_path, "dest")
    for img in docker_archive_images(str(tmp_path / "two.tar")):
        copy_image(img, dest, list(img.names))
    assert sorted(n for r in dest.list_images() for n in r.names) == [
        "docker.io/shared/n1:1", "docker.io/shared/n2:1"
    ]  # fmt: skip
