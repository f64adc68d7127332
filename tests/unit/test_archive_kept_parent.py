"""The applier keeps the parent directory of consecutive entries open (SafeRoot.keep_parent):
fewer path lookups, and the same tree as resolving every path anew."""

from __future__ import annotations

import io
import os

import pytest

from archive_corpus import DIR, REG, SYM, tar_of
from kiln.archive.applier import apply_layer
from kiln.util import inroot

needs_openat2 = pytest.mark.skipif(not inroot.openat2_available(), reason="needs openat2")


@needs_openat2
def test_entries_of_one_directory_share_one_lookup_of_it(tmp_path, monkeypatch):
    links = [(f"bin/tool{i}", SYM, "busybox") for i in range(200)]
    layer = tar_of(("bin", DIR, None), ("bin/busybox", REG, b"x"), *links)
    lookups = []
    real = inroot._openat2
    monkeypatch.setattr(inroot, "_openat2", lambda *a, **k: lookups.append(a[1]) or real(*a, **k))
    target = tmp_path / "t"
    target.mkdir()
    apply_layer(io.BytesIO(layer), str(target))
    assert sorted(os.listdir(target / "bin")) == sorted(
        ["busybox"] + [f"tool{i}" for i in range(200)]
    )
    assert os.readlink(target / "bin" / "tool199") == "busybox"
    assert len(lookups) < 50, f"{len(lookups)} path lookups for 202 entries"


@needs_openat2
@pytest.mark.parametrize("whiteouts", ["overlay", "delete"])
def test_a_kept_directory_replaced_by_a_symlink_is_followed_afterwards(tmp_path, whiteouts):
    layer = tar_of(
        ("d", DIR, None),
        ("d/x", REG, b"x"),
        ("e", DIR, None),
        ("d", SYM, "e"),  # replaces directory d (and d/x) while d was the kept parent
        ("d/y", REG, b"y"),
    )
    target = tmp_path / "t"
    target.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    apply_layer(io.BytesIO(layer), str(target), whiteouts=whiteouts)
    assert os.readlink(target / "d") == "e"
    assert sorted(os.listdir(target / "e")) == ["y"]
    assert os.listdir(outside) == []


@needs_openat2
def test_entries_below_a_symlinked_parent_land_where_it_leads_in_root(tmp_path):
    layer = tar_of(
        ("lib", DIR, None),
        ("usr", DIR, None),
        ("usr/lib", SYM, "/lib"),  # absolute: the layer's own /lib, not the host's
        ("usr/lib/a", REG, b"1"),
        ("usr/lib/b", REG, b"2"),
    )
    target = tmp_path / "t"
    target.mkdir()
    apply_layer(io.BytesIO(layer), str(target))
    assert sorted(os.listdir(target / "lib")) == ["a", "b"]
    assert (target / "lib" / "b").read_bytes() == b"2"
