"""A layer's xattrs never make its mounted tree differ from its tar.

A layer tar's entries may carry any ``SCHILY.xattr.*`` record. Here a hostile upper layer
over a plain lower one puts overlayfs' own metadata on its entries: ``trusted.overlay.opaque``
(a lower directory hidden), ``.redirect`` (another directory shown in its place), ``.metacopy``
(a lower file's data under an empty file), ``.origin``, ``.upper``, ``.nlink``, ``.whiteout``
and ``.whiteouts`` with an ``x`` opaque (an "xwhiteout" hiding a file), ``user.overlay.opaque``
(what a rootless mount reads), and on one file ``security.selinux`` beside the xattrs
images do carry. podman 4.3 and buildah 1.28 write all of it but the SELinux label, and
their mount of this image hides ``d/lower.txt`` and ``x/w`` and shows ``r``'s file in ``e``.

Each case makes the image reach the disk one way (load, pull, import, ADD of a local tar)
and mounts it with the overlay and the copy driver: the mount shows exactly the entries of
its tars, the later layer's over the earlier's; ``user.*``, ``security.capability`` and
``trusted.*`` are kept (as the references keep them), overlay's records and
``security.selinux`` are not; and ``kiln save`` gives back the layers' bytes as they came.

Failed before the change: ``security.selinux`` reached the disk on every path. The overlay
records were already dropped by the applier; these cases keep it that way end to end (with
them let through, the overlay mount fails to read ``m.txt`` and the copy driver hides
``d/lower.txt``).
"""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import pytest

import hostile_images as hi
import registry_servers
from archive_corpus import DIR, REG, tar_of
from hostile_rootfs import ROOT_MARKS
from kiln_cli import kiln_runner
from registry_env import isolate_registry_env

pytestmark = [
    *ROOT_MARKS,
    pytest.mark.timeout(300),
    # there the host labels every file: no tree shows only what a layer set
    pytest.mark.skipif(os.path.exists("/sys/fs/selinux/enforce"), reason="an SELinux host"),
]

CAP = bytes.fromhex("0000000200040000000000000000000000000000")  # net_bind_service
KEPT = {"user.k": b"v", "security.capability": CAP, "trusted.k": b"v"}
HOSTILE = {
    "security.selinux": "system_u:object_r:shadow_t:s0",
    "user.overlay.opaque": "y",
    **{k: v.decode("latin-1") for k, v in KEPT.items()},
}

ORIGIN = {"trusted.overlay.origin": "\x00\xfb", "trusted.overlay.upper": "u",
          "trusted.overlay.nlink": "U+0"}  # fmt: skip


def _entry(name: str, kind: str, data: bytes | None, xattrs: dict[str, str] | None = None):
    pax = {f"SCHILY.xattr.{k}": v for k, v in (xattrs or {}).items()}
    return (name, kind, data, {"mtime": 1_700_000_000, "mode": 0o755 if kind == DIR else 0o644,
                               "pax_headers": pax})  # fmt: skip


LOWER = tar_of(
    _entry("d", DIR, None),
    _entry("d/lower.txt", REG, b"lower\n"),
    _entry("r", DIR, None),
    _entry("r/secret.txt", REG, b"secret\n"),
    _entry("x", DIR, None),
    _entry("x/w", REG, b"lower w\n"),
    _entry("m.txt", REG, b"lower m\n"),
)
UPPER = tar_of(
    _entry("d", DIR, None, {"trusted.overlay.opaque": "y"}),
    _entry("d/new.txt", REG, b"new\n"),
    _entry("e", DIR, None, {"trusted.overlay.redirect": "/r"}),
    _entry("m.txt", REG, b"", {"trusted.overlay.metacopy": "\x00"}),
    _entry("o.txt", REG, b"o\n", ORIGIN),
    _entry("x", DIR, None, {"trusted.overlay.opaque": "x", "trusted.overlay.whiteouts": "y"}),
    _entry("x/w", REG, b"upper w\n", {"trusted.overlay.whiteout": "y"}),
    _entry("t.txt", REG, b"t\n", HOSTILE),
)
# what the tars say, the upper's entries over the lower's
UPPER_TREE = {"d": None, "d/new.txt": b"new\n", "e": None, "m.txt": b"", "o.txt": b"o\n",
              "x": None, "x/w": b"upper w\n", "t.txt": b"t\n"}  # fmt: skip
BOTH_TREE = {**UPPER_TREE, "d/lower.txt": b"lower\n", "r": None, "r/secret.txt": b"secret\n"}
DRIVERS = ["overlay", "copy"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")


def _kiln(tmp_path: Path, store: str, driver: str = "overlay"):
    environ = dict(os.environ, KILN_ROOT=str(tmp_path / store), KILN_SNAPSHOT_DRIVER=driver)
    return kiln_runner(environ, timeout=120)


def _check_tree(mnt: Path, tree: dict[str, bytes | None], kept: dict[str, bytes]) -> None:
    """``mnt`` shows exactly ``tree``, and on ``t.txt`` exactly the xattrs ``kept``."""
    seen = {}
    for dirpath, dirs, files in os.walk(mnt):
        for name in dirs + files:
            path = Path(dirpath, name)
            seen[str(path.relative_to(mnt))] = None if name in dirs else path.read_bytes()
    assert seen == tree
    t = mnt / "t.txt"
    assert {n: os.getxattr(t, n) for n in os.listxattr(t)} == kept


def _check_mount(kiln, image: str, tree: dict[str, bytes | None], kept=KEPT) -> None:
    """A working container of ``image``, mounted, shows ``tree`` (see ``_check_tree``)."""
    ctr = kiln("from", "-q", image).stdout.split()[-1]
    try:
        _check_tree(Path(kiln("mount", ctr).stdout.split()[-1]), tree, kept)
    finally:
        kiln("rm", ctr)


def _saved_layers(kiln, tmp_path: Path, image: str, fmt: str) -> list[bytes]:
    out = tmp_path / f"saved-{fmt}.tar"
    kiln("save", "-q", "--format", fmt, "-o", str(out), image)
    with tarfile.open(out) as tar:

        def read(name: str) -> bytes:
            return tar.extractfile(name).read()  # type: ignore[union-attr]

        if fmt == "docker-archive":
            return [read(name) for name in json.loads(read("manifest.json"))[0]["Layers"]]
        index = json.loads(read("index.json"))
        manifest = json.loads(read(f"blobs/sha256/{index['manifests'][0]['digest'][7:]}"))
        return [read(f"blobs/sha256/{layer['digest'][7:]}") for layer in manifest["layers"]]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_loaded_layer_mounts_as_its_tar_says(tmp_path, driver):
    kiln = _kiln(tmp_path, "store", driver)
    archive = tmp_path / "img.tar"
    archive.write_bytes(hi.docker_archive(hi.image([LOWER, UPPER], docker=True), ("xattrs:1",)))
    kiln("load", "-q", "-i", str(archive))
    _check_mount(kiln, "xattrs:1", BOTH_TREE)
    assert _saved_layers(kiln, tmp_path, "xattrs:1", "docker-archive") == [LOWER, UPPER]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_pulled_layer_mounts_as_its_tar_says(tmp_path, driver):
    blobs = [gzip.compress(layer, mtime=0) for layer in (LOWER, UPPER)]
    archive = tmp_path / "img.tar"
    img = hi.image(blobs)
    archive.write_bytes(hi.oci_archive(img, index=hi.oci_index(hi.oci_manifest(img), "xattrs:1")))
    source = _kiln(tmp_path, "source")
    source("load", "-q", "-i", str(archive))
    kiln = _kiln(tmp_path, "store", driver)
    with registry_servers.start_registry("plain", str(tmp_path / "reg")) as registry:
        ref = f"{registry.host}/hostile/xattrs:1"
        source("push", "-q", "--tls-verify=false", "xattrs:1", ref)
        kiln("pull", "-q", "--tls-verify=false", ref)
    _check_mount(kiln, ref, BOTH_TREE)
    assert _saved_layers(kiln, tmp_path, ref, "oci-archive") == blobs


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_imported_layer_mounts_as_its_tar_says(tmp_path, driver):
    kiln = _kiln(tmp_path, "store", driver)
    rootfs = tmp_path / "upper.tar"
    rootfs.write_bytes(UPPER)
    kiln("import", "-q", str(rootfs), "xattrs:1")
    _check_mount(kiln, "xattrs:1", UPPER_TREE)  # x/w included: not made a whiteout
    assert _saved_layers(kiln, tmp_path, "xattrs:1", "docker-archive") == [UPPER]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_local_tar_added_to_an_image_shows_as_its_tar_says(tmp_path, driver):
    kiln = _kiln(tmp_path, "store", driver)
    for name, data in (("lower.tar", LOWER), ("upper.tar", UPPER)):
        (tmp_path / name).write_bytes(data)
    kiln("import", "-q", str(tmp_path / "lower.tar"), "lower:1")
    ctr = kiln("from", "-q", "lower:1").stdout.split()[-1]
    try:
        kiln("add", ctr, str(tmp_path / "upper.tar"), "/")
        _check_tree(Path(kiln("mount", ctr).stdout.split()[-1]), BOTH_TREE, KEPT)
        kiln("commit", "-q", ctr, "xattrs:1")
    finally:
        kiln("rm", ctr)
    # a commit keeps what buildah's does: user.* and security.capability
    _check_mount(
        kiln, "xattrs:1", BOTH_TREE, {k: KEPT[k] for k in ("user.k", "security.capability")}
    )
