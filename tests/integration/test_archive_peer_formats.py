"""Archives and directories podman and skopeo write, read by ``kiln load`` as they read
them, and ``kiln import`` making the image ``podman import`` makes.

* a ``dir:`` image with uncompressed layers under the gzip media type (``podman save
  --format docker-dir`` without ``--compress``, ``skopeo copy docker-archive:... dir:...``:
  containers/image keeps the media type its source reported) loads as the same image;
* a docker-archive whose layers are xz or bzip2 files (``docker load`` and ``podman load``
  take them) loads as the same image; a corrupt one is one error and no image;
* ``kiln import`` sets no environment but what ``--change`` sets, and ``kiln inspect``
  shows the ``--message`` as ``Comment``, as podman's import and inspect do.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import lzma
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from fixtures_images import Podman

pytest_plugins = ["fixtures_images"]
pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman"),
]
MTIME = 1_700_000_000


def kiln(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kiln", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, res.stderr
    return res.stdout


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def docker_archive(path: Path, compress=(None, None), tag="peer/two:1") -> str:
    """A docker-archive (``docker save``'s layout) of a two-layer image, each layer stored
    as ``compress`` says (None, ``lzma.compress``, ``bz2.compress``); returns the image ID."""
    layers = [_tar({"a.txt": b"first\n"}), _tar({"b.txt": b"second\n" * 100})]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/b.txt"]},
        "created": "2023-11-14T22:13:20Z",
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]},
    }).encode()  # fmt: skip
    config_hex = hashlib.sha256(config).hexdigest()
    files = {f"{config_hex}.json": config}
    for i, (layer, pack) in enumerate(zip(layers, compress, strict=True)):
        files[f"l{i}/layer.tar"] = pack(layer) if pack else layer
    manifest = [{"Config": f"{config_hex}.json", "RepoTags": [tag], "Layers": ["l0/layer.tar", "l1/layer.tar"]}]  # fmt: skip
    files["manifest.json"] = json.dumps(manifest).encode()
    path.write_bytes(_tar(files))
    return "sha256:" + config_hex


@pytest.fixture
def peer():
    """podman on a store of its own (the session's holds what other files loaded), in a
    short directory: podman refuses a run root of more than 50 characters."""
    base = tempfile.mkdtemp(prefix="kiln-peer-")
    yield Podman(base)
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("writer", ["podman save --format docker-dir", "skopeo copy to dir:"])
def test_dir_image_with_uncompressed_layers_under_gzip_type_loads(tmp_path, peer, writer):
    archive, out = tmp_path / "two.tar", tmp_path / "dir"
    image_id = docker_archive(archive)
    if writer.startswith("podman"):
        peer("load", "-q", "-i", str(archive))
        peer("save", "-q", "--format", "docker-dir", "-o", str(out), "peer/two:1")
    else:
        if shutil.which("skopeo") is None:
            pytest.skip("needs skopeo")
        subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{archive}", f"dir:{out}"],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert {x["mediaType"] for x in manifest["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    }, "the peer wrote its layers as this test expects"
    assert (out / manifest["layers"][0]["digest"].split(":")[1]).read_bytes()[:2] != b"\x1f\x8b"

    # podman reads the layers by their bytes; so does kiln
    peer("rmi", "-a", "-f")
    assert peer("load", "-i", str(out)).stdout.strip() == f"Loaded image: {image_id}"
    assert ok(kiln(tmp_path / "root", "load", "-q", "-i", str(out))).strip() == (
        f"Loaded image: {image_id}"
    )
    ok(kiln(tmp_path / "root", "save", "-q", "-o", str(tmp_path / "back.tar"), image_id))


@pytest.mark.parametrize("pack", [lzma.compress, bz2.compress], ids=["xz", "bzip2"])
def test_docker_archive_with_xz_or_bzip2_layers_loads(tmp_path, peer, pack):
    archive = tmp_path / "packed.tar"
    image_id = docker_archive(archive, (pack, pack))
    assert peer("load", "-q", "-i", str(archive)).stdout.strip() == "Loaded image: localhost/peer/two:1"  # fmt: skip
    assert peer("images", "-q", "--no-trunc").stdout.split() == [image_id]

    root = tmp_path / "root"
    assert ok(kiln(root, "load", "-q", "-i", str(archive))).strip() == (
        "Loaded image: localhost/peer/two:1"
    )
    assert ok(kiln(root, "images", "-q", "--no-trunc")).split() == [image_id]
    # its layers are the tars the config names: a docker-archive of it holds them plain
    ok(kiln(root, "save", "-q", "-o", str(tmp_path / "plain.tar"), "peer/two:1"))
    assert ok(kiln(root, "load", "-q", "-i", str(tmp_path / "plain.tar")))


def test_docker_archive_with_a_corrupt_xz_layer_is_one_error_and_no_image(tmp_path):
    def corrupt(data: bytes) -> bytes:
        packed = bytearray(lzma.compress(data))
        packed[len(packed) // 2] ^= 0xFF
        return bytes(packed)

    archive = tmp_path / "bad.tar"
    docker_archive(archive, (None, corrupt))
    root = tmp_path / "root"
    res = kiln(root, "load", "-q", "-i", str(archive))
    assert res.returncode != 0
    assert "l1/layer.tar" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert ok(kiln(root, "images", "-q")).split() == []


def imported(tmp_path, peer, changes: list[str], message: str) -> tuple[dict, dict]:
    """(kiln's, podman's) inspect object of the same tarball imported with the same
    ``--change`` instructions and ``--message``."""
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(_tar({"etc/hello": b"hi\n"}))
    flags = [x for c in changes for x in ("-c", c)] + (["-m", message] if message else [])
    peer("import", "-q", *flags, str(rootfs), "made:1")
    ok(kiln(tmp_path / "root", "import", "-q", *flags, str(rootfs), "made:1"))
    [podman_view] = json.loads(peer("inspect", "made:1").stdout)
    [kiln_view] = json.loads(ok(kiln(tmp_path / "root", "inspect", "made:1")))
    return kiln_view, podman_view


@pytest.mark.parametrize("changes", [[], ["ENV A=1", "WORKDIR /srv"]], ids=["none", "env"])
def test_import_sets_no_environment_but_the_changes(tmp_path, peer, changes):
    kiln_view, podman_view = imported(tmp_path, peer, changes, "")
    assert kiln_view["Config"] == podman_view["Config"]
    assert kiln_view["Config"].get("Env") == (["A=1"] if changes else None)


def test_inspect_shows_the_import_message_as_comment(tmp_path, peer):
    kiln_view, podman_view = imported(tmp_path, peer, [], "a note")
    assert kiln_view["Comment"] == podman_view["Comment"] == "a note"


@pytest.mark.skipif(shutil.which("buildah") is None, reason="needs buildah")
@pytest.mark.parametrize("steps", ["LABEL x=1\n", ""], ids=["label", "bare-from"])
def test_a_build_on_an_imported_image_appends_path_as_buildah(tmp_path, peer, steps):
    rootfs, ctx = tmp_path / "rootfs.tar", tmp_path / "ctx"
    rootfs.write_bytes(_tar({"etc/hello": b"hi\n"}))
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM base:1\n" + steps)
    root = tmp_path / "root"
    peer("import", "-q", "-c", "ENV A=1", str(rootfs), "base:1")
    ok(kiln(root, "import", "-q", "-c", "ENV A=1", str(rootfs), "base:1"))
    storage = ["--root", peer.root, "--runroot", peer.runroot, "--storage-driver", "vfs"]
    subprocess.run(["buildah", *storage, "bud", "--isolation", "chroot", "-q", "-t", "built:1", str(ctx)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    ok(kiln(root, "build", "-q", "-t", "built:1", str(ctx)))
    [podman_view] = json.loads(peer("inspect", "built:1").stdout)
    [kiln_view] = json.loads(ok(kiln(root, "inspect", "built:1")))
    assert kiln_view["Config"]["Env"] == podman_view["Config"]["Env"]
    assert len(kiln_view["Config"]["Env"]) == (2 if steps else 1)
