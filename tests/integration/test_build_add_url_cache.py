"""``ADD <url>`` is cached on what the URL serves, not on the URL: a rebuild after the
remote file changed ships the new bytes (it reused the stale layer before), one after
no change is a cache hit, and ``--checksum`` pins the content without a request."""

from __future__ import annotations

import hashlib

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from file_server import serving
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    with serving(root) as url:
        yield root, url


def test_a_changed_remote_file_is_a_cache_miss(build_env, served):  # noqa: F811
    root, url = served
    (root / "data.txt").write_text("version 1\n")
    ctx = build_env.context_dir()
    text = f"FROM busybox\nADD {url}/data.txt /data.txt\n"
    first = build_env.build(ctx, text)
    assert build_env.files(first.image_id)["data.txt"] == b"version 1\n"
    again = build_env.build(ctx, text)
    assert again.image_id == first.image_id, "unchanged content: a cache hit"
    (root / "data.txt").write_text("version 2, changed on the server\n")
    changed = build_env.build(ctx, text)
    assert changed.image_id != first.image_id
    assert build_env.files(changed.image_id)["data.txt"] == b"version 2, changed on the server\n"


def test_a_pinned_checksum_needs_no_request_on_a_cache_hit(build_env, served):  # noqa: F811
    root, url = served
    body = b"pinned\n"
    (root / "pinned.txt").write_bytes(body)
    ctx = build_env.context_dir()
    text = (
        f"FROM busybox\nADD --checksum=sha256:{hashlib.sha256(body).hexdigest()} "
        f"{url}/pinned.txt /pinned.txt\n"
    )
    first = build_env.build(ctx, text)
    (root / "pinned.txt").unlink()  # the server no longer has it: a hit must not ask
    assert build_env.build(ctx, text).image_id == first.image_id
