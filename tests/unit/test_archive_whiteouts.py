"""Whiteouts and opaque directories in the three applier modes, and overlay-upper scans."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from archive_corpus import DIR, REG, tar_of  # noqa: E402
from kiln.archive.applier import apply_layer  # noqa: E402
from kiln.archive.changes import changes_from_overlay_upper  # noqa: E402
from kiln.archive.tar_writer import scan_overlay_upper, write_layer  # noqa: E402

IS_ROOT = os.geteuid() == 0
LAYER = tar_of(
    ("etc", DIR, None),
    ("etc/.wh.gone", REG, b""),
    ("var", DIR, None),
    ("var/cache", DIR, None),
    ("var/cache/.wh..wh..opq", REG, b""),
    ("var/cache/new", REG, b"fresh"),
)


def lower_tree(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc" / "gone").write_text("old")
    (root / "etc" / "kept").write_text("old")
    (root / "var" / "cache" / "sub").mkdir(parents=True)
    (root / "var" / "cache" / "old").write_text("old")
    (root / "var" / "cache" / "sub" / "deep").write_text("old")


def test_delete_mode(tmp_path):
    lower_tree(tmp_path)
    apply_layer(io.BytesIO(LAYER), str(tmp_path), whiteouts="delete")
    assert not (tmp_path / "etc" / "gone").exists()
    assert (tmp_path / "etc" / "kept").read_text() == "old"
    assert sorted(os.listdir(tmp_path / "var" / "cache")) == ["new"]
    assert (tmp_path / "var" / "cache" / "new").read_text() == "fresh"


def test_delete_mode_opaque_after_entries_keeps_this_layer(tmp_path):
    lower_tree(tmp_path)
    layer = tar_of(("var/cache/a", REG, b"mine"), ("var/cache/.wh..wh..opq", REG, b""))
    apply_layer(io.BytesIO(layer), str(tmp_path), whiteouts="delete")
    assert sorted(os.listdir(tmp_path / "var" / "cache")) == ["a"]


def test_delete_mode_missing_victim_is_fine(tmp_path):
    apply_layer(io.BytesIO(tar_of(("nope/.wh.x", REG, b""))), str(tmp_path), whiteouts="delete")


def test_none_mode_keeps_whiteout_files(tmp_path):
    apply_layer(io.BytesIO(LAYER), str(tmp_path), whiteouts="none")
    assert (tmp_path / "etc" / ".wh.gone").is_file()
    assert (tmp_path / "var" / "cache" / ".wh..wh..opq").is_file()


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="trusted.* xattrs need root")
def test_overlay_mode(tmp_path):
    apply_layer(io.BytesIO(LAYER), str(tmp_path), whiteouts="overlay")
    st = os.lstat(tmp_path / "etc" / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(tmp_path / "var" / "cache", "trusted.overlay.opaque") == b"y"
    assert not (tmp_path / "var" / "cache" / ".wh..wh..opq").exists()


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="trusted.* xattrs need root")
def test_overlay_xattrs_from_the_tar_are_ignored(tmp_path):
    import tarfile

    info = tarfile.TarInfo("d")
    info.type = tarfile.DIRTYPE
    info.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.k": "v"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info)
    apply_layer(io.BytesIO(buf.getvalue()), str(tmp_path))
    assert os.getxattr(tmp_path / "d", "user.k") == b"v"
    assert "trusted.overlay.opaque" not in os.listxattr(tmp_path / "d")


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
