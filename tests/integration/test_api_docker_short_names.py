"""A short name on kiln serve's Docker routes means Docker Hub, as dockerd reads it
(``shortnames/img:1`` -> ``docker.io/shortnames/img:1``, ``kiln-short-one`` ->
``docker.io/library/kiln-short-one``), whatever registries.conf's unqualified-search
registries say; the libpod routes keep registries.conf's rules, which podman --remote
relies on.

No internet: the registries.conf given to the server sends ``docker.io`` to a path of a
local registry (``[[registry]] prefix = "docker.io"``), and names the same registry's root
as its unqualified-search registry, where other images go under the same names. Which
image arrives says which rule was followed.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.parse
from pathlib import Path

import pytest

from api_server import dockerfile_context, request, start_server, stop_server

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

CALL_TIMEOUT = 120
# the "hub" image goes where docker.io leads, the "search" image under the same short names
# in registries.conf's unqualified-search registry
PUSHED = {
    "hub": ("hub/shortnames/img:1", "hub/library/kiln-short-one:1", "hub/shortnames/base:1"),
    "search": ("shortnames/img:1", "kiln-short-one:1", "shortnames/base:1"),
}


def one_file_tar(text: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("which")
        info.size, info.mtime = len(text), 1_700_000_000
        tf.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def kiln(env: dict, root: Path, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "kiln.cli.main", "--root", str(root), *args],
                       env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=CALL_TIMEOUT)  # fmt: skip
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout.strip()


@pytest.fixture(scope="module")
def served(tmp_path_factory, registry_plain):
    tmp = tmp_path_factory.mktemp("docker-short-names")
    host = registry_plain.host
    conf = tmp / "registries.conf"
    conf.write_text(
        f'unqualified-search-registries = ["{host}"]\n'
        f'[[registry]]\nlocation = "{host}"\ninsecure = true\n'
        f'[[registry]]\nprefix = "docker.io"\nlocation = "{host}/hub"\ninsecure = true\n'
    )
    env = dict(os.environ, KILN_REGISTRIES_CONF=str(conf), HOME=str(tmp / "home"),
               XDG_RUNTIME_DIR=str(tmp / "run"))  # fmt: skip
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME", "KILN_ROOT"):
        env.pop(var, None)
    ids = {}
    for where, names in PUSHED.items():
        (tmp / f"{where}.tar").write_bytes(one_file_tar(where))
        ids[where] = bare(kiln(env, tmp / "src", "import", "-q", str(tmp / f"{where}.tar"),
                               f"localhost/{where}:1"))  # fmt: skip
        for name in names:
            kiln(env, tmp / "src", "push", "--tls-verify=false", f"localhost/{where}:1",
                 f"docker://{host}/{name}")  # fmt: skip
    proc, sock = start_server(tmp, env=env)
    try:
        yield sock, host, ids
    finally:
        assert stop_server(proc) == 0


def post(sock: str, path: str, body: bytes | None = None, **params: str) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/x-tar"} if body is not None else {}
    query = "?" + urllib.parse.urlencode(params) if params else ""
    status, _, raw = request(sock, "POST", path + query, body, headers, timeout=CALL_TIMEOUT)
    return status, raw


def bare(image_id: str) -> str:
    return image_id.removeprefix("sha256:")


def image_id(sock: str, name: str, api: str = "/v1.41") -> str | None:
    """The ID of the image ``name`` means on the Docker (or libpod) routes; None: none."""
    status, _, raw = request(sock, "GET", f"{api}/images/{name}/json", timeout=CALL_TIMEOUT)
    return bare(json.loads(raw)["Id"]) if status == 200 else None


@pytest.mark.parametrize(("from_image", "shown"), [
    ("shortnames/img", "shortnames/img:1"),
    ("kiln-short-one", "kiln-short-one:1"),
])  # fmt: skip
def test_docker_pull_of_a_short_name_comes_from_docker_hub(served, from_image, shown):
    sock, _host, ids = served
    status, raw = post(sock, "/v1.41/images/create", fromImage=from_image, tag="1")
    assert status == 200 and b'"error"' not in raw, raw
    assert f"Downloaded newer image for {shown}".encode() in raw
    assert image_id(sock, shown) == ids["hub"]


def test_docker_pull_of_an_absent_short_name_names_docker_hub(served):
    sock, host, _ids = served
    status, raw = post(sock, "/v1.41/images/create", fromImage="shortnames/absent", tag="1")
    message = json.loads(raw)["message"]
    assert status == 404 and "docker.io/shortnames/absent:1" in message, message
    assert f"{host}/shortnames/absent" not in message


def test_docker_build_pulls_a_short_from_from_docker_hub(served):
    sock, host, ids = served
    status, raw = post(sock, "/v1.41/build", dockerfile_context("FROM shortnames/base:1\nLABEL x=1\n"),
                       t="kiln-test/short-from:1")  # fmt: skip
    assert status == 200 and b'"error"' not in raw, raw
    assert image_id(sock, "shortnames/base:1") == ids["hub"]
    status, raw = post(sock, "/v1.41/build", dockerfile_context("FROM shortnames/absent:1\n"))
    assert b"docker.io/shortnames/absent:1" in raw, raw
    assert f"{host}/shortnames/absent".encode() not in raw


def test_libpod_pull_keeps_registries_conf_search(served):
    sock, host, ids = served
    status, raw = post(sock, "/v4.0.0/libpod/images/pull", reference="shortnames/img:1")
    assert status == 200 and b'"error"' not in raw, raw
    assert image_id(sock, f"{host}/shortnames/img:1", "/v4.0.0/libpod") == ids["search"]
