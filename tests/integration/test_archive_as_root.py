"""The archive applier's root-only modes: overlay whiteouts (trusted.* xattrs, 0/0
character devices), scans of an overlay upper directory, and owners set on extract."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from archive_corpus import WHITEOUT_LAYER as LAYER
from archive_corpus import whiteout_lower_tree as lower_tree
from kiln.archive.applier import apply_layer, extract_tar
from kiln.archive.changes import changes_from_overlay_upper
from kiln.archive.tar_writer import scan_overlay_upper, scan_tree, write_layer
from kiln.snapshot.copytree import merge_layers

IS_ROOT = os.geteuid() == 0


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="trusted.* xattrs need root")
def test_overlay_mode(tmp_path):
    apply_layer(io.BytesIO(LAYER), str(tmp_path), whiteouts="overlay")
    st = os.lstat(tmp_path / "etc" / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(tmp_path / "var" / "cache", "trusted.overlay.opaque") == b"y"
    assert not (tmp_path / "var" / "cache" / ".wh..wh..opq").exists()


# set as podman, buildah, containerd and moby set them; overlayfs' own records and the SELinux
# label never (see kiln.archive.layer_xattrs)
CAP = bytes.fromhex("0000000200040000000000000000000000000000")  # net_bind_service
KEPT = {"user.k": b"v", "trusted.k": b"v", "security.capability": CAP}
DROPPED = ("trusted.overlay.opaque", "trusted.overlay.redirect", "user.overlay.opaque",
           "security.selinux")  # fmt: skip


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="trusted.* xattrs need root")
@pytest.mark.parametrize("whiteouts", ["overlay", "delete", "none"])
def test_xattrs_a_layer_may_not_set_are_ignored(tmp_path, whiteouts):
    info = tarfile.TarInfo("d")
    info.type = tarfile.DIRTYPE
    info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("latin-1") for k, v in KEPT.items()}
    info.pax_headers |= {f"SCHILY.xattr.{k}": "y" for k in DROPPED}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info)
    apply_layer(io.BytesIO(buf.getvalue()), str(tmp_path), whiteouts=whiteouts)
    assert {k: os.getxattr(tmp_path / "d", k) for k in os.listxattr(tmp_path / "d")} == KEPT


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="trusted.* xattrs need root")
def test_the_copy_driver_merges_what_an_unpack_would_set(tmp_path):
    # a layer unpacked by an older kiln may hold more than an unpack sets now
    layer, merged = tmp_path / "layer", tmp_path / "merged"
    layer.mkdir()
    merged.mkdir()
    (layer / "f").write_text("f")
    for name, value in (*KEPT.items(), ("security.selinux", b"system_u:object_r:shadow_t:s0")):
        os.setxattr(layer / "f", name, value)
    merge_layers([str(layer)], str(merged))
    assert {k: os.getxattr(merged / "f", k) for k in os.listxattr(merged / "f")} == KEPT


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="trusted.* xattrs need root")
def test_overlay_upper_scan_round_trip(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    apply_layer(io.BytesIO(LAYER), str(upper), whiteouts="overlay")
    entries = list(scan_overlay_upper(str(upper)))
    kinds = {(e.type, e.path) for e in entries}
    assert ("whiteout", "etc/gone") in kinds
    assert ("opaque", "var/cache") in kinds
    assert all("trusted.overlay.opaque" not in e.xattrs for e in entries)
    blob = io.BytesIO()
    write_layer(entries, blob)
    blob.seek(0)
    full = tmp_path / "full"
    full.mkdir()
    lower_tree(full)
    apply_layer(blob, str(full), whiteouts="delete")
    assert not (full / "etc" / "gone").exists()
    assert sorted(os.listdir(full / "var" / "cache")) == ["new"]

    lower = tmp_path / "lower"
    lower.mkdir()
    lower_tree(lower)
    changes = [(c.kind, c.path) for c in changes_from_overlay_upper(str(upper), [str(lower)])]
    assert ("D", "/etc/gone") in changes
    assert ("A", "/var/cache/new") in changes
    assert ("C", "/etc") in changes
    assert ("D", "/var/cache/old") in changes


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root to chown")
def test_extract_tar_chown(tmp_path):
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(src / "bin" / "tool", 0o4755)
    os.symlink("/usr/share/zoneinfo/UTC", src / "localtime")
    blob = io.BytesIO()
    write_layer(scan_tree(str(src)), blob)
    out = tmp_path / "out"
    out.mkdir()
    blob.seek(0)
    extract_tar(blob, str(out), chown=(7, 8))
    st = os.lstat(out / "localtime")
    assert (st.st_uid, st.st_gid) == (7, 8)
    assert os.stat(out / "bin" / "tool").st_mode & 0o4000
