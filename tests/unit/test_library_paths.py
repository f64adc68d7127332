"""A script names files with ``pathlib.Path`` as it does for ``open()``: save, load, import
and a build's context and Containerfiles take one (they failed with "'PosixPath' object
has no attribute 'write'" and the like)."""

from __future__ import annotations

from pathlib import Path

import kiln
from fixtures_images import make_busybox_rootfs


def test_files_are_taken_as_paths(tmp_path: Path):
    archive, rootfs = tmp_path / "saved.tar", tmp_path / "rootfs.tar"
    make_busybox_rootfs(str(rootfs))
    with kiln.open_context(tmp_path / "other") as ctx:
        image_id = kiln.import_image(ctx, rootfs, "imported:1").id
        assert kiln.save_images(ctx, ["imported:1"], archive).output == str(archive)
        kiln.remove_images(ctx, ["imported:1"])
        loaded = kiln.load_images(ctx, archive)
    assert [(i.id, i.names) for i in loaded.images] == [(image_id, ["localhost/imported:1"])]
    opts = kiln.BuildOptions(context=tmp_path, dockerfiles=[tmp_path / "Containerfile"])
    assert (opts.context, opts.dockerfiles) == (str(tmp_path), [str(tmp_path / "Containerfile")])
