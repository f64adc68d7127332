"""Property tests from Docker's own API spec against kiln's ASGI app.

Limited to the system, image and build operations kiln implements and that
need no network (pull, push and search reach registries). For every generated
request: no 5xx, and every error body is ``{"message": ...}`` as the spec says.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from kiln.api.app import create_app  # noqa: E402
from kiln.ops.config import Config  # noqa: E402

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "spec" / "docker-engine-api.yaml"
OPERATIONS = [
    "SystemPing",
    "SystemPingHead",
    "SystemVersion",
    "SystemInfo",
    "ImageList",
    "ImageInspect",
    "ImageHistory",
    "ImageTag",
    "ImageDelete",
    "ImagePrune",
    "ImageGet",
    "ImageGetAll",
    "ImageLoad",
    "ImageCommit",
    "ImageBuild",
    "BuildPrune",
    "SystemDataUsage",
]

if not SPEC.exists():
    pytest.skip(f"{SPEC.name} not found next to the checkout", allow_module_level=True)

# the store goes in the test's temporary directory (``_store``), never in $TMPDIR: the
# app is made at import, when no fixture has run, and must write nothing then
APP = create_app(Config(root=os.devnull))


@pytest.fixture(autouse=True, scope="module")
def _store(tmp_path_factory):
    work = tmp_path_factory.mktemp("schemathesis")
    APP.app.state.config = Config(root=str(work / "root"), tmpdir=str(work))


@schemathesis.serializer("application/x-tar")
def _tar_bytes(ctx, value):
    """Whatever was generated, as raw bytes (mostly not a valid tar: that is the point)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode()


schema = schemathesis.openapi.from_path(str(SPEC))
schema.app = APP
schema = schema.include(operation_id=OPERATIONS)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_docker_api_spec(case):
    case.query = {k: v for k, v in (case.query or {}).items() if k != "remote"}  # no network
    response = case.call()
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("message"), str), body
        assert body["message"]
