"""unpack_image into the snapshotter (each layer once) and image_diff (A/C/D)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixtures_images import make_child  # noqa: E402
from kiln.image import chain_ids, unpack_image  # noqa: E402
from kiln.image.diff import image_diff  # noqa: E402
from kiln.snapshot import Snapshotter  # noqa: E402

pytest_plugins = ["fixtures_images"]
pytestmark = pytest.mark.root


@pytest.fixture
def snaps(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (whiteout devices, mounts)")
    s = Snapshotter(str(tmp_path / "snapshots"))
    yield s
    s.close()


def test_unpack_each_layer_once(kiln_store, snaps, busybox_image):
    child = make_child(kiln_store, busybox_image)
    top = unpack_image(kiln_store, snaps, child)
    assert top == chain_ids(child.config.diff_ids)[-1] == child.record.layers[-1]
    assert sorted(snaps.list_layers()) == sorted(child.record.layers)
    base_dir = snaps.layer_dirs(busybox_image.record.layers[0])[0]
    before = os.stat(base_dir).st_ino
    assert unpack_image(kiln_store, snaps, busybox_image) == busybox_image.record.layers[0]
    assert os.stat(base_dir).st_ino == before  # not unpacked again
    dirs = snaps.layer_dirs(top)
    assert os.path.islink(os.path.join(dirs[1], "bin/ls"))
    assert Path(dirs[0], "hello.txt").read_text() == "hello\n"


def test_diff_against_parent_and_other_image(kiln_store, snaps, busybox_image):
    make_child(kiln_store, busybox_image)
    want = {("A", "/hello.txt"), ("C", "/etc/passwd"), ("D", "/bin/ls")}
    parent = set(image_diff(kiln_store, snaps, "child:1"))
    assert want <= parent
    assert all(kind == "C" for kind, path in parent - want), parent - want
    other = set(image_diff(kiln_store, snaps, "child:1", "busybox"))
    assert want <= other
    assert not snaps.list_active()  # the views were removed
