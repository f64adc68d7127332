"""How a push uploads its blobs when the caller passes registry options: one streamed PUT
per blob, as ``kiln push`` (and skopeo) send them (chunked PATCHes only when asked: see
test_pull_push_registry's cross-repository mount test)."""

from __future__ import annotations

import tarfile

import httpx
import pytest

import registry_servers
from kiln.image import import_tarball
from kiln.ops import registry as ops
from kiln.ops.context import open_context
from kiln.registry import RegistryOptions
from kiln.store import Store
from registry_env import isolate_registry_env

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


class _Recorder(httpx.BaseTransport):
    """The real HTTP transport, noting each request's method and path."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.seen: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _image(root: str, tmp_path, size: int) -> None:
    """One layer of random bytes: larger than 16 MiB once compressed."""
    path = tmp_path / "layer.tar"
    with tarfile.open(path, "w") as tar, open("/dev/urandom", "rb") as src:
        info = tarfile.TarInfo("random.bin")
        info.size, info.mtime = size, 1_700_000_000
        tar.addfile(info, src)
    with Store.open(root) as store, open(path, "rb") as f:
        import_tarball(store, f, names=["big:1"], timestamp=1_700_000_000)


def test_push_with_options_uploads_each_blob_in_one_put(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")
    root = str(tmp_path / "root")
    _image(root, tmp_path, size=20 << 20)
    with registry_servers.start_registry("plain", str(tmp_path / "reg")) as reg:
        recorder = _Recorder()
        options = RegistryOptions(tls_verify=False, transport=recorder)
        with open_context(root) as ctx:
            ops.push(ctx, "big:1", f"docker://{reg.host}/mode/big:1", options=options)
        uploads = [(m, p) for m, p in recorder.seen if "/blobs/uploads/" in p]
        assert uploads, recorder.seen
        assert not [m for m, _ in uploads if m == "PATCH"], uploads
        assert len([m for m, _ in uploads if m == "PUT"]) == 2  # the layer and the config
