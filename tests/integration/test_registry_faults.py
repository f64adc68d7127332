"""Pulls and pushes when things go wrong: the registry dies mid-transfer, a blob is
served with the wrong bytes, credentials are refused, the image does not exist."""

from __future__ import annotations

import contextlib
import glob
import http.server
import os
import threading

import pytest

import registry_servers  # noqa: E402
from kiln.errors import DigestMismatch, KilnError, NotFound, Unauthorized, Unavailable  # noqa: E402
from kiln.ops import registry as ops  # noqa: E402
from kiln.ops.context import open_context  # noqa: E402
from kiln.ops.events import CallbackSink  # noqa: E402
from kiln.ops.options import PullRequest  # noqa: E402
from kiln.registry import RegistryOptions  # noqa: E402
from registry_env import isolate_registry_env  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]
FAST = RegistryOptions(tls_verify=False, retries=2, retry_delay=0.1)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")


def _big_image(root: str, tmp_path, size: int = 48 << 20) -> str:
    """A one-layer image of random bytes (about ``size``), stored uncompressed-ish."""
    import tarfile

    path = tmp_path / "big.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size, info.mtime = size, 1_700_000_000
        with open("/dev/urandom", "rb") as src:
            tar.addfile(info, src)
    from kiln.image import import_tarball
    from kiln.store import Store

    with Store.open(root) as store, open(path, "rb") as f:
        return import_tarball(store, f, names=["big:1"], timestamp=1_700_000_000).id


def _snapshot(root: str) -> tuple:
    from kiln.store import Store

    with Store.open(root) as store:
        images = sorted((r.id, tuple(sorted(r.names))) for r in store.list_images())
        return images, sorted(str(d) for d in store.iter_blobs())


def test_registry_stopped_mid_pull_then_retry(tmp_path):
    src_root, dst_root = str(tmp_path / "src"), str(tmp_path / "dst")
    image_id = _big_image(src_root, tmp_path)
    with registry_servers.start_registry("plain", str(tmp_path / "reg")) as reg:
        ref = f"{reg.host}/faults/big:1"
        with open_context(src_root) as ctx:
            ops.push(ctx, "big:1", f"docker://{ref}", options=FAST)
        before = _snapshot(dst_root)
        killed = []

        def kill_on_progress(event):
            if event.kind == "progress" and not killed and event.data.get("current", 0) > 0:
                killed.append(True)
                reg.kill()

        sink = CallbackSink(kill_on_progress)
        with open_context(dst_root, events=sink) as ctx, pytest.raises(Unavailable) as err:
            ops.pull(ctx, PullRequest.of(ref, options=FAST))
        assert killed
        assert "127.0.0.1" in str(err.value) and "Traceback" not in str(err.value)
        assert _snapshot(dst_root) == before  # no image, no half blob
        assert not glob.glob(os.path.join(dst_root, "ingest", "*", "data"))

        reg.start()
        with open_context(dst_root) as ctx:
            res = ops.pull(ctx, PullRequest.of(ref, options=FAST))
            assert res.image_id == image_id
            from kiln.image import open_store_image, validate_image

            validate_image(open_store_image(ctx.store, ref))


def test_registry_stopped_mid_push_then_retry(tmp_path):
    root = str(tmp_path / "src")
    _big_image(root, tmp_path)
    with registry_servers.start_registry("plain", str(tmp_path / "reg")) as reg:
        ref = f"{reg.host}/faults/pushed:1"
        killed = []

        def kill(event):
            if event.kind == "step" and event.message.startswith("Copying blob") and not killed:
                killed.append(True)
                reg.kill()

        with open_context(root, events=CallbackSink(kill)) as ctx, pytest.raises(Unavailable):
            ops.push(ctx, "big:1", f"docker://{ref}", options=FAST)
        reg.start()
        with open_context(root) as ctx:
            res = ops.push(ctx, "big:1", f"docker://{ref}", options=FAST)
        with open_context(str(tmp_path / "dst")) as ctx:
            assert (
                ops.pull(ctx, PullRequest.of(ref, options=FAST)).manifest_digest
                == res.manifest_digest
            )


def test_blob_with_wrong_content_is_refused(tmp_path):
    src_root, dst_root = str(tmp_path / "src"), str(tmp_path / "dst")
    _big_image(src_root, tmp_path, size=1 << 20)
    with registry_servers.start_registry("plain", str(tmp_path / "reg")) as reg:
        ref = f"{reg.host}/faults/corrupt:1"
        with open_context(src_root) as ctx:
            ops.push(ctx, "big:1", f"docker://{ref}", options=FAST)
            layer = ctx.store.get_image(ctx.store.resolve_image("big:1").id).layers
            from kiln.image import open_store_image

            digest = open_store_image(ctx.store, "big:1").layers[0].digest
        del layer
        data = os.path.join(
            reg.storage, "docker/registry/v2/blobs/sha256", digest.hex[:2], digest.hex, "data"
        )
        size = os.path.getsize(data)
        with open(data, "r+b") as f:  # same size, different bytes
            f.seek(size // 2)
            f.write(b"\0corrupted\0")
        before = _snapshot(dst_root)
        with open_context(dst_root) as ctx:
            with pytest.raises(DigestMismatch) as err:
                ops.pull(ctx, PullRequest.of(ref, options=FAST))
            assert str(digest) in str(err.value)
            assert not ctx.store.has_blob(digest)
            _assert_nothing_unpacked(ctx)
        assert _snapshot(dst_root) == before


def _assert_nothing_unpacked(ctx) -> None:
    """No layer recorded and no tree left in the snapshotter's work area: what a pull
    unpacked while the blob arrived went with the blob."""
    assert ctx.snapshots.list_layers() == []
    assert os.listdir(os.path.join(ctx.store.snapshot_root, "tmp")) == []


def test_truncated_layer_blob_fails_the_pull_and_leaves_nothing(tmp_path):
    """A registry that serves a layer blob cut short (its storage lost the tail): the
    pull, which unpacks the layer while it arrives, fails with an error naming the blob
    and keeps no blob, image, unpacked layer or staged tree."""
    src_root, dst_root = str(tmp_path / "src"), str(tmp_path / "dst")
    _big_image(src_root, tmp_path, size=4 << 20)
    with registry_servers.start_registry("plain", str(tmp_path / "reg")) as reg:
        ref = f"{reg.host}/faults/truncated:1"
        with open_context(src_root) as ctx:
            ops.push(ctx, "big:1", f"docker://{ref}", options=FAST)
            from kiln.image import open_store_image

            digest = open_store_image(ctx.store, "big:1").layers[0].digest
        data = os.path.join(
            reg.storage, "docker/registry/v2/blobs/sha256", digest.hex[:2], digest.hex, "data"
        )
        os.truncate(data, os.path.getsize(data) // 2)
        before = _snapshot(dst_root)
        with open_context(dst_root) as ctx:
            with pytest.raises(DigestMismatch) as err:
                ops.pull(ctx, PullRequest.of(ref, options=FAST))
            assert str(digest) in str(err.value) and "Traceback" not in str(err.value)
            assert not ctx.store.has_blob(digest)
            _assert_nothing_unpacked(ctx)
        assert _snapshot(dst_root) == before
        assert not glob.glob(os.path.join(dst_root, "ingest", "*", "data"))


def test_bad_credentials_are_clear_and_secret(registry_basic, tmp_path, capsys):
    from kiln.cli.main import run

    secret = "Wr0ng-S3cret-Value"
    ref = f"docker://{registry_basic.host}/faults/auth:1"
    with open_context(str(tmp_path / "root")) as ctx, pytest.raises(Unauthorized) as err:
        ops.pull(
            ctx,
            PullRequest.of(ref, options=FAST.merged(creds=f"{registry_basic.username}:{secret}")),
        )
    assert "invalid username/password" in str(err.value) and secret not in str(err.value)
    code = run(
        [
            "--root",
            str(tmp_path / "root"),
            "pull",
            "--tls-verify=false",
            "--creds",
            f"{registry_basic.username}:{secret}",
            ref,
        ]
    )
    out, errtext = capsys.readouterr()
    assert code == 125 and "unauthorized" in errtext and secret not in out + errtext
    code = run(
        [
            "--root",
            str(tmp_path / "root"),
            "login",
            "--tls-verify=false",
            "-u",
            registry_basic.username,
            "-p",
            secret,
            registry_basic.host,
        ]
    )
    out, errtext = capsys.readouterr()
    assert code == 125 and "invalid username/password" in errtext
    assert secret not in out + errtext
    assert not (tmp_path / "run" / "containers" / "auth.json").exists()


def test_unknown_image_or_tag(tmp_path, capsys):
    from kiln.cli.main import run

    with registry_servers.start_registry("plain", str(tmp_path / "reg")) as reg:
        src = str(tmp_path / "src")
        _big_image(src, tmp_path, size=4096)
        with open_context(src) as ctx:
            ops.push(ctx, "big:1", f"docker://{reg.host}/faults/known:1", options=FAST)
            with pytest.raises(
                NotFound, match="manifest for .*known:nope not found: manifest unknown"
            ):
                ops.pull(ctx, PullRequest.of(f"{reg.host}/faults/known:nope", options=FAST))
            with pytest.raises(NotFound, match="manifest unknown|name unknown"):
                ops.pull(ctx, PullRequest.of(f"{reg.host}/faults/never-pushed:1", options=FAST))
        code = run(["--root", src, "pull", "--tls-verify=false", f"{reg.host}/faults/known:nope"])
        _, err = capsys.readouterr()
        last = err.strip().splitlines()[-1]
        assert code == 125 and last.startswith("Error: ") and "manifest unknown" in last
        assert "Traceback" not in err


def test_layer_not_matching_its_diff_id_fails_the_pull_and_is_never_unpacked(tmp_path):
    """A pull checks blob digests; the diff_id is checked where the tar is read: the pull
    (which unpacks as the layer arrives) fails and keeps nothing, and without the pull's
    unpack, unpack and validate refuse the image, so it never gets a usable filesystem."""
    import io
    import json

    from kiln.image import open_store_image, unpack_image, validate_image
    from kiln.image.registry_source import pull_into_store, resolve_remote
    from kiln.oci import media_types as mt
    from kiln.oci.descriptor import Descriptor
    from kiln.oci.digest import Digest
    from kiln.oci.manifest import Manifest
    from kiln.oci.reference import Reference
    from kiln.registry import RegistryClient, RegistryOptions

    src_root, dst_root = str(tmp_path / "src"), str(tmp_path / "dst")
    _big_image(src_root, tmp_path, size=4096)
    with registry_servers.start_registry("plain", str(tmp_path / "reg")) as reg:
        ref = Reference.parse(f"{reg.host}/faults/diffid:1")
        with open_context(src_root) as ctx:
            img = open_store_image(ctx.store, "big:1")
            config = json.loads(img.blobs.open_blob(img.manifest.config.digest).read())
            config["rootfs"]["diff_ids"] = ["sha256:" + "ab" * 32]  # not the layer's tar
            raw_config = json.dumps(config).encode()
            config_desc = Descriptor(
                img.manifest.config.media_type, Digest.of_bytes(raw_config), len(raw_config)
            )
            manifest = Manifest.build(img.manifest.media_type, config_desc, list(img.layers))
            with RegistryClient(RegistryOptions(tls_verify=False)) as client:
                layer = img.layers[0]
                assert mt.layer_compression(layer.media_type) == "gzip"
                client.push_blob(ref, layer, lambda: ctx.store.open_blob(layer.digest))
                client.push_blob(ref, config_desc, lambda: io.BytesIO(raw_config))
                client.put_manifest(ref, manifest.raw, manifest.media_type)
        with open_context(dst_root) as ctx:
            with pytest.raises(DigestMismatch, match="diff_id"):
                ops.pull(ctx, PullRequest.of(str(ref), options=FAST))
            assert ctx.store.list_images() == [] and list(ctx.store.iter_blobs()) == []
            assert ctx.snapshots.list_layers() == []
            assert os.listdir(os.path.join(ctx.store.snapshot_root, "tmp")) == []
            with RegistryClient(RegistryOptions(tls_verify=False)) as client:
                remote = resolve_remote(client, ref)
                with ctx.store.lease() as lease:  # the library's pull without a snapshotter
                    rec = pull_into_store(client, remote, ctx.store, ["bad:1"], lease=lease)
            bad = open_store_image(ctx.store, rec.id)
            with pytest.raises(DigestMismatch):
                unpack_image(ctx.store, ctx.snapshots, bad)
            assert ctx.snapshots.list_layers() == []
            with pytest.raises(DigestMismatch):
                validate_image(bad)


@contextlib.contextmanager
def _not_a_registry(v2_status: int):
    """A web server that is no registry (a script's wrong port): ``GET /v2/`` answers
    ``v2_status``, other reads 404, uploads (POSTs, listed in ``.posts``) 501 Not Implemented."""
    posts: list[str] = []

    class NotARegistry(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self._answer(v2_status if self.path == "/v2/" else 404)

        def do_HEAD(self) -> None:
            self._answer(404)

        def do_POST(self) -> None:
            posts.append(self.path)
            self._answer(501)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotARegistry)
    server.posts = posts  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_cannot_take_uploads_is_asked_once_and_not_told_to_retry(tmp_path):
    """An upload to a web server that is no registry gets 501 Not Implemented: no retry
    changes that, so no retries and no "try again later"."""
    root = str(tmp_path / "src")
    _big_image(root, tmp_path, size=1 << 10)
    with _not_a_registry(200) as server:
        ref = f"127.0.0.1:{server.server_port}/faults/nowhere:1"
        with open_context(root) as ctx, pytest.raises(KilnError) as err:
            ops.push(ctx, "big:1", f"docker://{ref}", options=FAST)
    assert not isinstance(err.value, Unavailable)
    assert "try again later" not in str(err.value)
    assert "is it a registry?" in str(err.value)
    assert len(server.posts) <= 2  # once per blob (the layer, the config: in parallel)


def test_a_login_to_a_server_that_is_no_registry_says_so():
    """podman: "invalid status code from registry 404"; kiln said only "not found", which
    reads as a wrong user."""
    with _not_a_registry(404) as server:
        host = f"127.0.0.1:{server.server_port}"
        with pytest.raises(KilnError) as err:
            ops.login(None, host, "user", "secret-pw", options=FAST)
    assert str(err.value) == (
        f"logging into {host}: GET /v2/ answered 404 Not Found: is it a registry?"
    )
