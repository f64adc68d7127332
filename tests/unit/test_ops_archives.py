"""kiln.ops.archives and kiln.ops.file_transfer: save/load/import and file push/pull."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading

import pytest

from kiln.errors import DigestMismatch, InvalidArgument, NotFound
from kiln.ops import archives, file_transfer, store_copy
from kiln.ops import images as ops
from kiln.ops.config import Config
from kiln.ops.context import Context
from kiln.ops.events import ListSink
from kiln.ops.options import PullRequest

pytest_plugins = ["fixtures_images"]


def new_ctx(path) -> Context:
    from kiln.store import Store

    return Context(
        store=Store.open(str(path)), events=ListSink(), config=Config(tmpdir=str(path.parent))
    )


@pytest.fixture
def ctx(tmp_path):
    c = new_ctx(tmp_path / "a")
    yield c
    c.close()


@pytest.fixture
def other(tmp_path):
    c = new_ctx(tmp_path / "b")
    yield c
    c.close()


@pytest.fixture
def imported(ctx, busybox_rootfs_tar):
    return archives.import_image(
        ctx, busybox_rootfs_tar, "bb:1", changes=['CMD ["/bin/sh"]'], message="base"
    )


def test_import_names_localhost_and_applies_changes(ctx, imported):
    assert imported.names == ["localhost/bb:1"]
    assert ctx.events.messages("result") == [imported.id]
    cfg = ops.image_config(ctx, imported)
    assert list(cfg.config.cmd) == ["/bin/sh"]
    assert [h.comment for h in cfg.history] == ["base"]


def test_import_from_a_stream_and_missing_files(ctx, busybox_rootfs_tar):
    with open(busybox_rootfs_tar, "rb") as f:
        rec = archives.import_image(ctx, io.BytesIO(f.read()))
    assert rec.names == [] and ops.image_exists(ctx, rec.id)
    with pytest.raises(NotFound):
        archives.import_image(ctx, "/nonexistent/rootfs.tar")


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_load_round_trip_keeps_id_and_names(ctx, other, imported, tmp_path, fmt):
    ops.tag(ctx, "bb:1", "quay.io/org/bb:2")
    out = str(tmp_path / "img.tar")
    res = archives.save(ctx, ["bb:1", "quay.io/org/bb:2"], out, format=fmt)
    assert res.image_ids == [imported.id]
    assert archives.detect_format(out) == fmt
    loaded = archives.load(other, out)
    assert [i.id for i in loaded.images] == [imported.id]
    assert other.events.messages("result") == [
        "Loaded image: localhost/bb:1",
        "Loaded image: quay.io/org/bb:2",
    ]
    rec = other.store.resolve_image("localhost/bb:1")
    assert rec.id == imported.id
    assert sorted(rec.names) == ["localhost/bb:1", "quay.io/org/bb:2"]
    if fmt == "oci-archive":  # nothing converted: the manifest digest survives
        assert rec.manifest_digest == imported.manifest_digest


def test_save_to_a_stream_and_load_from_a_stream(ctx, other, imported):
    buf = io.BytesIO()
    archives.save(ctx, [imported.id], buf, format="oci-archive")
    buf.seek(0)
    loaded = archives.load(other, buf)
    assert [i.id for i in loaded.images] == [imported.id]
    assert loaded.lines == [f"Loaded image: {imported.id}"]  # saved by ID: no name


class PipeLike:
    """A write-only, unseekable stream (a pipe, a socket) that records what it is given."""

    def __init__(self, on_write=None):
        self.chunks: list[bytes] = []
        self.on_write = on_write

    def write(self, data) -> int:
        if self.on_write is not None and not self.chunks:
            self.on_write()
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def seek(self, *a):
        raise io.UnsupportedOperation("seek")

    def tell(self):
        raise io.UnsupportedOperation("tell")


def _spool_files(root) -> list[str]:
    return [p.name for p in root.rglob("*") if p.name.startswith(("kiln-save-", ".kiln-archive-"))]


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_streams_to_an_unseekable_stream_with_the_bytes_of_a_file(
    ctx, imported, tmp_path, fmt
):
    ops.tag(ctx, "bb:1", "quay.io/org/bb:2")
    names = ["bb:1", "quay.io/org/bb:2"]
    path = tmp_path / "img.tar"
    archives.save(ctx, names, str(path), format=fmt)
    seen: list[list[str]] = []
    out = PipeLike(on_write=lambda: seen.append(_spool_files(tmp_path)))
    archives.save(ctx, names, out, format=fmt)
    assert seen == [[]]  # the first bytes went out with no archive spooled anywhere
    assert len(out.chunks) > 1
    assert b"".join(out.chunks) == path.read_bytes()
    assert _spool_files(tmp_path) == []


def test_load_reads_a_file_stream_in_place(ctx, other, imported, tmp_path, monkeypatch):
    path = tmp_path / "img.tar"
    archives.save(ctx, ["bb:1"], str(path))

    def no_spool(*a, **kw):
        raise AssertionError("a regular file must not be copied again")

    monkeypatch.setattr(archives.tempfile, "TemporaryFile", no_spool)
    with open(path, "rb") as f:
        loaded = archives.load(other, f)
    assert [i.id for i in loaded.images] == [imported.id]
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    with open(empty, "rb") as f, pytest.raises(InvalidArgument, match="no archive data"):
        archives.load(other, f)


@pytest.mark.parametrize("fmt", ["oci-dir", "docker-dir"])
def test_save_to_directories_and_load_them(ctx, other, imported, tmp_path, fmt):
    out = str(tmp_path / "out")
    archives.save(ctx, ["bb:1"], out, format=fmt, compress=True)
    assert archives.detect_format(out) == fmt
    loaded = archives.load(other, out)
    assert [i.id for i in loaded.images] == [imported.id]


def test_save_refuses_unknown_formats_and_images(ctx, imported, tmp_path):
    with pytest.raises(InvalidArgument, match="unknown format"):
        archives.save(ctx, ["bb:1"], str(tmp_path / "x"), format="zip")
    with pytest.raises(NotFound, match="nothere: image not known"):
        archives.save(ctx, ["nothere"], str(tmp_path / "x.tar"))
    assert not (tmp_path / "x.tar").exists()


def test_load_refuses_what_is_not_an_archive(ctx, tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"hello" * 1000)
    with pytest.raises(InvalidArgument):
        archives.load(ctx, str(junk))
    with pytest.raises(InvalidArgument, match="no archive data"):
        archives.load(ctx, io.BytesIO(b""))
    with pytest.raises(InvalidArgument, match=r"^stdin\b") as err:
        archives.load(ctx, io.BytesIO(b"garbage\n"))  # `docker load < junk`: no /proc/self/fd/N
    assert "/proc/" not in str(err.value)
    with pytest.raises(NotFound):
        archives.load(ctx, str(tmp_path / "missing.tar"))


def _docker_archive(path, layer: bytes, diff_id: str | None = None, tag="bad:1"):
    """A docker-archive by hand: one layer blob, a config naming ``diff_id``."""
    diff_id = diff_id or "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [tag], "Layers": ["layer.tar"]}])
    with tarfile.open(path, "w") as tar:
        for name, data in (
            (cfg_name, config),
            ("layer.tar", layer),
            ("manifest.json", manifest.encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_load_that_fails_leaves_no_image_and_the_next_load_works(ctx, tmp_path):
    good_layer = io.BytesIO()
    with tarfile.open(fileobj=good_layer, mode="w") as t:
        info = tarfile.TarInfo("hello")
        info.size = 5
        t.addfile(info, io.BytesIO(b"hello"))
    good = good_layer.getvalue()
    # content that does not match its diff_id
    bad = _docker_archive(str(tmp_path / "bad.tar"), good, diff_id="sha256:" + "0" * 64)
    with pytest.raises(DigestMismatch, match=r"sha256:0{64} in .* does not match its digest"):
        archives.load(ctx, bad)
    assert ctx.store.list_images() == []
    # consistent digests but not a tar at all: only validation catches it
    garbage = _docker_archive(str(tmp_path / "garbage.tar"), b"\x01" * 4096)
    with pytest.raises(InvalidArgument):
        archives.load(ctx, garbage)
    assert ctx.store.list_images() == []
    ok = _docker_archive(str(tmp_path / "ok.tar"), good, tag="good:1")
    loaded = archives.load(ctx, ok)
    assert loaded.lines == ["Loaded image: localhost/good:1"]
    assert [r.names for r in ctx.store.list_images()] == [["localhost/good:1"]]


# RepoTags as docker save writes them (short) and as podman names what it loads (podman
# 4.3's load, and buildah's pull docker-archive:, of an archive from dockerd 20.10)
SHORT_NAMES = {
    "base:1": "localhost/base:1",
    "team/base:2": "localhost/team/base:2",
    "library/base:3": "localhost/library/base:3",
    "docker.io/base:4": "docker.io/library/base:4",
    "quay.io/team/base:5": "quay.io/team/base:5",
    "localhost/base:6": "localhost/base:6",
    "127.0.0.1:5000/base:7": "127.0.0.1:5000/base:7",
}


def _hello_layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("hello")
        info.size = 5
        t.addfile(info, io.BytesIO(b"hello"))
    return buf.getvalue()


@pytest.mark.parametrize("tag", sorted(SHORT_NAMES))
def test_load_names_a_short_repo_tag_as_podman_does(ctx, tmp_path, tag):
    archive = _docker_archive(str(tmp_path / "short.tar"), _hello_layer(), tag=tag)
    assert archives.load(ctx, archive).lines == [f"Loaded image: {SHORT_NAMES[tag]}"]
    assert [r.names for r in ctx.store.list_images()] == [[SHORT_NAMES[tag]]]


def test_load_for_the_docker_api_names_a_short_repo_tag_as_dockerd_does(ctx, tmp_path):
    """dockerd 20.10 loads ``base:1`` as ``docker.io/library/base:1`` (shown ``base:1``)."""
    archive = _docker_archive(str(tmp_path / "short.tar"), _hello_layer(), tag="base:1")
    assert archives.load(ctx, archive, docker_hub=True).lines == [
        "Loaded image: docker.io/library/base:1"
    ]


# --- push / pull over file transports ------------------------------------------


@pytest.mark.parametrize("kind", ["oci", "oci-archive", "dir", "docker-archive"])
def test_push_then_pull_keeps_digests(ctx, other, imported, tmp_path, kind):
    path = str(tmp_path / ("dest.tar" if "archive" in kind else "dest"))
    dest = f"{kind}:{path}" + (":quay.io/a/b:1" if kind == "docker-archive" else "")
    pushed = file_transfer.push(ctx, "bb:1", dest)
    pulled = file_transfer.pull(other, PullRequest.of(f"{kind}:{path}"))
    assert pulled.image_id == pushed.image_id == imported.id
    if kind != "docker-archive":  # unconverted: the manifest bytes travel unchanged
        assert pushed.manifest_digest == imported.manifest_digest
        assert pulled.manifest_digest == imported.manifest_digest
    else:
        assert pulled.names == ["quay.io/a/b:1"]
    assert other.events.messages("result") == [imported.id.removeprefix("sha256:")]


def test_pull_names_from_full_oci_ref_names_only(ctx, other, imported, tmp_path):
    file_transfer.push(ctx, "bb:1", f"oci:{tmp_path}/lay:v1")
    file_transfer.push(ctx, "bb:1", f"oci:{tmp_path}/lay:quay.io/x/y:2")
    assert file_transfer.pull(other, PullRequest.of(f"oci:{tmp_path}/lay:v1")).names == []
    assert file_transfer.pull(other, PullRequest.of(f"oci:{tmp_path}/lay:quay.io/x/y:2")).names == [
        "quay.io/x/y:2"
    ]


def test_pull_errors(ctx, tmp_path):
    with pytest.raises(NotFound):
        file_transfer.pull(ctx, PullRequest.of(f"oci:{tmp_path}/nothing"))
    with pytest.raises(InvalidArgument):
        file_transfer.pull(ctx, PullRequest.of("containers-storage:busybox"))


def _blob(data: bytes):
    from kiln.oci import Descriptor, Digest

    return Descriptor("application/octet-stream", Digest.of_bytes(data), len(data))


def test_failed_load_keeps_a_blob_a_concurrent_operation_reused(ctx):
    store = ctx.store
    reused, own = _blob(b"added by this load, reused"), _blob(b"added by this load only")
    with store.lease() as a:
        dest = store_copy.StoreCopyDestination(store, a, validate=False)
        for desc, data in (
            (reused, b"added by this load, reused"),
            (own, b"added by this load only"),
        ):
            dest.put_blob(desc, io.BytesIO(data))
        assert dest.new == [reused.digest, own.digest]
        held, done = threading.Event(), threading.Event()

        def concurrent() -> None:  # another load or pull (its own thread and leases)
            with store.lease() as b:
                other = store_copy.StoreCopyDestination(store, b, validate=False)
                assert other.has_blob(reused.digest)  # found it present: leased
                held.set()
                done.wait(30)

        worker = threading.Thread(target=concurrent)
        worker.start()
        try:
            assert held.wait(30)
            dest.forget_new()  # this load failed
            assert store.has_blob(reused.digest)
            assert not store.has_blob(own.digest)
        finally:
            done.set()
            worker.join(30)


def test_load_keeps_a_blob_it_found_present_from_gc(ctx):
    import os
    import time

    store = ctx.store
    store.blob_grace_seconds = 0
    desc = _blob(b"present before the load")
    store.put_blob(desc, io.BytesIO(b"present before the load"))
    old = time.time() - 3600
    os.utime(store.blob_path(desc.digest), (old, old))
    with store.lease() as lease:
        dest = store_copy.StoreCopyDestination(store, lease, validate=False)
        assert dest.has_blob(desc.digest)  # copy_image skips the put: it is kept now
        store.gc()
        assert store.has_blob(desc.digest)
        assert dest.new == []
