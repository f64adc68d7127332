"""GET /libpod/images/{name}/resolve answers as podman's route does (podman 5 added it; its
own API tests are the cases here): an alias alone, else one candidate per
unqualified-search registry, never ``localhost/`` (a pull never tries it); a qualified
name as it is; 400 for an invalid name or when nothing can resolve it."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.ops.config import Config

CONF = """unqualified-search-registries = ["docker.io", "quay.io", "registry.fedoraproject.org"]
[aliases]
"podman-desktop-test123" = "florent.fr/will/like"
"""


def client_for(tmp_path, conf_text: str) -> TestClient:
    conf = tmp_path / "registries.conf"
    conf.write_text(conf_text)
    config = Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path), registries_conf=str(conf))
    return TestClient(create_app(config))


@pytest.mark.parametrize(
    ("name", "names"),
    [
        ("podman-desktop-test123:this", ["florent.fr/will/like:this"]),
        (
            "no-alias-for-sure",
            [
                "docker.io/library/no-alias-for-sure:latest",
                "quay.io/no-alias-for-sure:latest",
                "registry.fedoraproject.org/no-alias-for-sure:latest",
            ],
        ),
        ("localhost/app", ["localhost/app:latest"]),
        ("quay.io/team/app:2", ["quay.io/team/app:2"]),
    ],
)
def test_resolve_answers_as_podman(tmp_path, name, names):
    with client_for(tmp_path, CONF) as c:
        r = c.get(f"/v5.0.0/libpod/images/{name}/resolve")
    assert r.status_code == 200 and r.json() == {"Names": names}


def test_resolve_refuses_what_podman_refuses(tmp_path):
    with client_for(tmp_path, CONF) as c:
        r = c.get("/v5.0.0/libpod/images/noCAPITALcharAllowed/resolve")
        assert r.status_code == 400 and "must be lowercase" in r.json()["cause"]
    with client_for(tmp_path, "unqualified-search-registries = []\n") as c:
        r = c.get("/v5.0.0/libpod/images/app/resolve")
        assert r.status_code == 400 and "did not resolve to an alias" in r.json()["message"]
