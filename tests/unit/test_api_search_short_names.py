"""``GET /images/search`` looks a bare term up on Docker Hub, as dockerd does; podman's
``/libpod/images/search`` keeps registries.conf's unqualified-search registries. The
search use case is replaced by a recorder: what is checked is what each route asks for."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.ops import registry
from kiln.ops.config import Config
from kiln.ops.options import RegistryOptions


@pytest.fixture
def asked(monkeypatch) -> list[RegistryOptions]:
    seen: list[RegistryOptions] = []

    def search(ctx: Any, term: str, *, options: RegistryOptions, **kw: Any) -> list:
        seen.append(options)
        return []

    monkeypatch.setattr(registry, "search", search)  # the routes import it when called
    return seen


@pytest.mark.parametrize(("path", "docker_hub"), [
    ("/v1.41/images/search?term=alpine", True),
    ("/v4.3.1/libpod/images/search?term=alpine", False),
])  # fmt: skip
def test_search_reads_a_bare_term_as_its_clients_tool_does(tmp_path, asked, path, docker_hub):
    config = Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path))
    with TestClient(create_app(config)) as client:
        r = client.get(path)
    assert r.status_code == 200, r.text
    (options,) = asked
    assert options.docker_short_names is docker_hub
