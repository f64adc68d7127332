"""write_image, history, inspect and tree over a store (no root needed)."""

from __future__ import annotations

import io

import pytest

pytest.register_assert_rewrite("fixtures_images")
from fixtures_images import child_layer, make_child  # noqa: E402
from kiln.errors import InvalidArgument, NotFound  # noqa: E402
from kiln.image import NewLayer, validate_image, write_image  # noqa: E402
from kiln.image.history import image_history  # noqa: E402
from kiln.image.inspect import inspect_image  # noqa: E402
from kiln.image.layers import recompress  # noqa: E402
from kiln.image.store_image import IngestWriter  # noqa: E402
from kiln.image.tree import image_tree  # noqa: E402
from kiln.oci import History  # noqa: E402

pytest_plugins = ["fixtures_images"]

PODMAN_KEYS = {
    "Id", "Digest", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Config",
    "Version", "Author", "Architecture", "Os", "Size", "VirtualSize", "GraphDriver", "RootFS",
    "Labels", "Annotations", "ManifestType", "User", "History", "NamesHistory",
}  # fmt: skip


def test_write_image(kiln_store, busybox_image):
    child = make_child(kiln_store, busybox_image)
    validate_image(child)
    assert child.layers[0] == busybox_image.layers[0]
    assert len(child.config.diff_ids) == 2
    assert child.record.layers[0] == busybox_image.record.layers[0]
    top = kiln_store.get_layer(child.record.layers[1])
    assert child.record.size == busybox_image.record.size + top.uncompressed_size
    assert top.uncompressed_size == len(child_layer())
    docker = make_child(kiln_store, busybox_image, "docker")
    validate_image(docker)
    assert docker.manifest.is_docker
    assert docker.config.diff_ids == child.config.diff_ids


def test_write_image_refuses_missing_blob_and_bad_history(kiln_store, busybox_image):
    class Fake:
        diff_id = digest = "sha256:" + "b" * 64
        size = uncompressed_size = 10
        compression = "gzip"

    with pytest.raises(NotFound, match="not in the store"):
        write_image(kiln_store, busybox_image, [NewLayer(Fake(), History())], busybox_image.config)
    with kiln_store.ingest("") as ing:
        res = recompress(io.BytesIO(child_layer()), IngestWriter(ing), "gzip")
        ing.commit()
    with pytest.raises(InvalidArgument, match="non-empty history"):
        write_image(kiln_store, busybox_image, [NewLayer(res)], busybox_image.config)


def test_history_inspect_tree(kiln_store, busybox_image):
    child = make_child(kiln_store, busybox_image)
    rows = image_history(kiln_store, "child:1")
    assert [r.created_by for r in rows] == ["RUN change", "ENV CHILD=1", ""]
    assert rows[0].id == child.id and rows[0].tags == ["docker.io/library/child:1"]
    assert rows[1].id == "<missing>" and rows[1].size == 0 and rows[1].empty_layer
    assert rows[2].id == busybox_image.id  # a stored image ends exactly there
    assert rows[2].size == busybox_image.record.size
    assert rows[0].size == kiln_store.get_layer(child.record.layers[1]).uncompressed_size
    assert rows[2].comment == "busybox rootfs"

    info = inspect_image(kiln_store, "child:1")
    assert set(info) == PODMAN_KEYS
    assert info["Id"] == child.id.removeprefix("sha256:")
    assert info["Parent"] == busybox_image.id.removeprefix("sha256:")
    assert info["RepoTags"] == ["docker.io/library/child:1"]
    assert info["RepoDigests"] == []  # built here: never pulled or pushed (docker's [])
    assert info["RootFS"]["Layers"] == list(child.config.diff_ids)
    assert "CHILD=1" in info["Config"]["Env"]
    assert info["Labels"] is None
    assert inspect_image(kiln_store, "busybox")["Parent"] == ""

    tree = image_tree(kiln_store, "child:1")
    lines = tree.splitlines()
    assert lines[0] == f"Image ID: {child.id[7:19]}"
    assert lines[3] == "Image Layers"
    assert (
        lines[4].startswith("├── ID: ")
        and "Top Layer of: [docker.io/library/busybox:latest]" in lines[4]
    )
    assert (
        lines[5].startswith("└── ID: ") and "Top Layer of: [docker.io/library/child:1]" in lines[5]
    )
    requires = image_tree(kiln_store, "busybox", what_requires=True)
    assert "docker.io/library/child:1" in requires
