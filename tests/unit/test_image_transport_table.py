"""Every file transport behind the one shape (``kiln.image.transports.TRANSPORTS``): what a
sink writes its source reads back, with the names the transport promises, and what a
transport says it cannot do it refuses."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("fixtures_images")
from fixtures_images import make_child  # noqa: E402
from kiln.errors import InvalidArgument  # noqa: E402
from kiln.image import validate_image  # noqa: E402
from kiln.image.transport_names import FILE_TRANSPORTS  # noqa: E402
from kiln.image.transports import (  # noqa: E402
    TRANSPORTS,
    close_source,
    transport,
    write_images,
)

pytest_plugins = ["fixtures_images"]

#: the names a pull of ``TRANSPORT:PATH:REF`` gives the image, per transport
REF = "example.test/app:1"
PULLED_NAMES = {
    "oci": (REF,),
    "oci-archive": (REF,),
    "docker-archive": (REF,),
    "dir": (),
}


def _target(tmp_path, name: str) -> str:
    return str(tmp_path / name.replace("-", "_"))


def test_the_table_names_every_file_transport():
    assert set(TRANSPORTS) == set(FILE_TRANSPORTS) == set(PULLED_NAMES)
    for name, t in TRANSPORTS.items():
        assert name == t.NAME


def test_an_unknown_transport_is_refused_naming_the_known_ones():
    with pytest.raises(InvalidArgument, match="docker-archive, oci, oci-archive"):
        transport("tarball")


@pytest.mark.parametrize("name", sorted(PULLED_NAMES))
def test_what_a_sink_writes_its_source_reads_back(name, busybox_image, tmp_path):
    t = transport(name)
    target = _target(tmp_path, name)
    names = t.sink_names(REF, ["busybox:latest"])
    [res] = write_images(name, target, [(busybox_image, names)], tmp_dir=str(tmp_path))
    assert res.image_id == busybox_image.id  # the config (image ID) survives everywhere
    img = t.open_source(target, "" if name == "dir" else REF, tmp_dir=str(tmp_path))
    try:
        validate_image(img)
        assert str(img.manifest.config.digest) == busybox_image.id
        assert img.diff_ids == busybox_image.diff_ids
        assert tuple(img.names) == PULLED_NAMES[name]
        [every] = t.all_images(target, tmp_dir=str(tmp_path))
        assert str(every.manifest.config.digest) == busybox_image.id
        close_source(every)
    finally:
        close_source(img)


@pytest.mark.parametrize("name", sorted(PULLED_NAMES))
def test_a_transport_holding_one_image_refuses_two(name, kiln_store, busybox_image, tmp_path):
    child = make_child(kiln_store, busybox_image)
    items = [(busybox_image, []), (child, [])]
    target = _target(tmp_path, name)
    t = transport(name)
    if t.SINGLE_IMAGE:
        with pytest.raises(InvalidArgument, match="exactly one image"):
            write_images(name, target, items, tmp_dir=str(tmp_path))
        return
    write_images(name, target, items, tmp_dir=str(tmp_path))
    found = t.all_images(target, tmp_dir=str(tmp_path))
    assert {str(i.manifest.config.digest) for i in found} == {busybox_image.id, child.id}
    for img in found:
        close_source(img)


def test_a_docker_archive_sink_writes_docker_manifests_unless_told(busybox_image, tmp_path):
    """``COPY_DEFAULTS`` are defaults: a caller's own ``image_format`` (even None, meaning
    "as stored", which is what ``kiln push IMAGE docker-archive:`` has always passed) wins."""
    [default] = write_images("docker-archive", str(tmp_path / "a.tar"), [(busybox_image, [])])
    assert default.manifest.is_docker
    [as_stored] = write_images(
        "docker-archive", str(tmp_path / "b.tar"), [(busybox_image, [])], image_format=None
    )
    assert as_stored.manifest.is_docker == busybox_image.manifest.is_docker
