"""POST /commit (docker commit -a/-m) and ``ops.containers.commit_container(author=, comment=)``."""

from __future__ import annotations

import os

import pytest

from kiln.ops import containers
from kiln.ops.config import Config
from kiln.ops.context import open_context

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for overlay snapshots"),
]


@pytest.fixture
def setup(tmp_path):
    config = Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path))
    with open_context(config.root, config=config) as ctx:
        yield config, ctx


def _check(ctx, image_id: str, author: str, comment: str) -> None:
    from kiln.image import open_store_image
    from kiln.image.inspect import inspect_image

    data = inspect_image(ctx.store, image_id)
    assert data["Author"] == author and data["Comment"] == comment
    history = open_store_image(ctx.store, image_id).config.history
    assert (history[-1].author, history[-1].comment) == (author, comment)


def test_ops_commit_author_and_comment(setup):
    _, ctx = setup
    b = containers.create_container(ctx, "scratch", name="c1")
    rec = containers.commit_container(ctx, "c1", "localhost/c:1", author="Ann <a@x>",
                                      comment="first cut")  # fmt: skip
    _check(ctx, rec.id, "Ann <a@x>", "first cut")
    again = containers.commit_container(ctx, "c1", "localhost/c:2")
    _check(ctx, again.id, "", "")  # the container itself was not changed
    b.delete()


def test_api_commit_author_and_comment(setup):
    from starlette.testclient import TestClient

    from kiln.api.app import create_app

    config, ctx = setup
    containers.create_container(ctx, "scratch", name="c2")
    with TestClient(create_app(config)) as client:
        r = client.post("/v1.41/commit", params={"container": "c2", "repo": "made", "tag": "1",
                                                 "author": "Bob", "comment": "via api"})  # fmt: skip
        assert r.status_code == 201, r.text
        image_id = r.json()["Id"]
        body = client.get("/v1.41/images/made:1/json").json()
        assert body["Author"] == "Bob" and body["Comment"] == "via api"
        history = client.get("/v1.41/images/made:1/history").json()
        assert history[0]["Comment"] == "via api"
    _check(ctx, image_id, "Bob", "via api")
