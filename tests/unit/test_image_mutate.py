"""kiln.image.mutate.append_layers: the one place a new image's config and manifest are
put together (write_image stores what it returns)."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("fixtures_images")
from kiln.errors import InvalidArgument  # noqa: E402
from kiln.image.mutate import Addendum, append_layers  # noqa: E402
from kiln.oci import media_types as mt  # noqa: E402
from kiln.oci.config import History  # noqa: E402
from kiln.oci.descriptor import Descriptor  # noqa: E402
from kiln.oci.digest import Digest  # noqa: E402

pytest_plugins = ["fixtures_images"]

LAYER = Descriptor(mt.DOCKER_LAYER_GZIP, Digest.of_bytes(b"new layer"), 9)
DIFF_ID = str(Digest.of_bytes(b"new layer, uncompressed"))
RUN = History(created="2024-01-01T00:00:00Z", created_by="RUN true")


def test_appending_a_layer_in_docker_format(busybox_image):
    new = append_layers(
        busybox_image,
        [Addendum(LAYER, DIFF_ID, RUN)],
        busybox_image.config,
        "docker",
        annotations={"a": "b"},
    )
    m = new.manifest
    assert m.media_type == mt.DOCKER_MANIFEST
    # the base's layers are kept, spelled in the new format, and the new one follows
    assert [d.digest for d in m.layers] == [*(d.digest for d in busybox_image.layers), LAYER.digest]
    assert all(d.media_type.startswith("application/vnd.docker.") for d in m.layers)
    assert list(new.config.diff_ids) == [*busybox_image.config.diff_ids, DIFF_ID]
    assert new.config.history[-1] == RUN
    assert len(new.config.history) == len(busybox_image.config.history) + 1
    # the config descriptor names exactly the bytes to store
    assert new.config_descriptor.digest == Digest.of_bytes(new.config_raw)
    assert new.config_descriptor.size == len(new.config_raw)
    assert new.config_descriptor.media_type == mt.DOCKER_CONFIG
    assert m.annotations == {}  # Docker manifests carry none


def test_oci_keeps_annotations_and_an_empty_append_keeps_the_layers(busybox_image):
    new = append_layers(busybox_image, [], busybox_image.config, "oci", annotations={"a": "b"})
    assert new.manifest.annotations == {"a": "b"}
    assert [d.digest for d in new.manifest.layers] == [d.digest for d in busybox_image.layers]
    assert new.config.diff_ids == busybox_image.config.diff_ids


def test_a_layer_without_a_history_entry_is_refused(busybox_image):
    with pytest.raises(InvalidArgument, match="non-empty history entries"):
        append_layers(busybox_image, [Addendum(LAYER, DIFF_ID)], busybox_image.config, "oci")


def test_an_unknown_format_is_refused(busybox_image):
    with pytest.raises(InvalidArgument, match="--format 'v2s1' is invalid: use one of oci, docker"):
        append_layers(None, [], busybox_image.config, "v2s1")
