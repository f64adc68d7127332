"""Whiteouts and opaque directories in the three applier modes, and overlay-upper scans."""

from __future__ import annotations

import io
import os

from archive_corpus import REG, tar_of
from archive_corpus import WHITEOUT_LAYER as LAYER
from archive_corpus import whiteout_lower_tree as lower_tree
from kiln.archive.applier import apply_layer


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
