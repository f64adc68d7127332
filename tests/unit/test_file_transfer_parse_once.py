"""A pull parses its source's transport once, however it reaches the image's copy."""

from __future__ import annotations

import pytest

import hostile_images as hi
from kiln.ops import file_transfer
from kiln.ops import transports as tp
from kiln.ops.context import open_context
from kiln.ops.options import PullRequest


@pytest.mark.parametrize("all_platforms", [False, True])
def test_a_file_pull_parses_its_source_once(tmp_path, monkeypatch, all_platforms):
    monkeypatch.setenv("KILN_SNAPSHOT_DRIVER", "copy")
    archive = tmp_path / "img.tar"
    archive.write_bytes(hi.oci_archive(hi.image([hi.plain_layer()])))
    parsed = []
    real = tp.parse_transport

    def parse_transport(value, **kw):
        parsed.append(value)
        return real(value, **kw)

    monkeypatch.setattr(tp, "parse_transport", parse_transport)
    source = f"oci-archive:{archive}"
    with open_context(str(tmp_path / "root")) as ctx:
        res = file_transfer.pull(ctx, PullRequest.of(source, all_platforms=all_platforms))
        assert ctx.store.get_image(res.image_id)
    assert parsed == [source]


def test_an_image_named_docker_is_found_by_its_name(tmp_path, monkeypatch):
    # ``docker:24`` is the image "docker" (podman's reading), not a misspelt transport
    monkeypatch.setenv("KILN_SNAPSHOT_DRIVER", "copy")
    archive = tmp_path / "img.tar"
    archive.write_bytes(hi.oci_archive(hi.image([hi.plain_layer()])))
    with open_context(str(tmp_path / "root")) as ctx:
        res = file_transfer.pull(ctx, PullRequest.of(f"oci-archive:{archive}"))
        ctx.store.tag("docker:24", res.image_id)
        again = file_transfer.pull(ctx, PullRequest.of("docker:24", policy="never"))
        assert again.image_id == res.image_id
        out = file_transfer.push(ctx, "docker:24", f"oci:{tmp_path / 'lay'}:24")
        assert out.image_id == res.image_id
