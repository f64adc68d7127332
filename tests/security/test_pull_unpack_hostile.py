"""A pull unpacks each layer while it arrives, before its digest is checked: a hostile
registry must never get an unverified tree used. Here the registry serves, under the
right digest, a different but perfectly valid layer of the same size (so the unpack
completes and only the digest check can catch it), and an image whose config names a
wrong diff_id. Each build fails with one clear line, leaves no unpacked layer and no
scratch behind, ``kiln system check`` is clean, and once the registry serves the right
bytes the next build sees the real content, not the hostile one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

import registry_servers  # noqa: E402
from fixtures_images import make_busybox_rootfs  # noqa: E402
from kiln.image import import_tarball  # noqa: E402
from kiln.oci.descriptor import Descriptor  # noqa: E402
from kiln.oci.digest import Digest  # noqa: E402
from kiln.oci.manifest import Manifest  # noqa: E402
from kiln.oci.reference import Reference  # noqa: E402
from kiln.ops import registry as ops  # noqa: E402
from kiln.ops.context import open_context  # noqa: E402
from kiln.registry import RegistryClient, RegistryOptions  # noqa: E402
from kiln.snapshot import Snapshotter  # noqa: E402
from kiln.store import Store  # noqa: E402
from registry_env import isolate_registry_env  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]
GOOD, EVIL = b"good-content-4711\n", b"evil-content-4711\n"  # same length


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")


@pytest.fixture
def registry(tmp_path):
    with registry_servers.start_registry("plain", str(tmp_path / "reg")) as reg:
        yield reg


def _victim(tmp_path, registry) -> tuple[str, str, bytes]:
    """busybox + /data.txt as one layer, pushed; (ref, the layer blob's file, its bytes)."""
    rootfs = make_busybox_rootfs(str(tmp_path / "rootfs.tar"))
    with tarfile.open(rootfs, "a") as tar:
        info = tarfile.TarInfo("data.txt")
        info.size, info.mtime = len(GOOD), 1_700_000_000
        import io

        tar.addfile(info, io.BytesIO(GOOD))
    ref = f"{registry.host}/hostile/unpack:1"
    src = str(tmp_path / "src")
    with Store.open(src) as store, open(rootfs, "rb") as f:
        import_tarball(store, f, names=["victim:1"], compression="none", timestamp=1_700_000_000)
    with open_context(src) as ctx:
        ops.push(ctx, "victim:1", f"docker://{ref}", options=RegistryOptions(tls_verify=False))
    with RegistryClient(RegistryOptions(tls_verify=False)) as client:
        raw, media_type, _ = client.get_manifest(Reference.parse(ref))
        digest = Manifest.parse(raw, media_type).layers[0].digest
    path = os.path.join(registry.storage, "docker/registry/v2/blobs/sha256", digest.hex[:2],
                        digest.hex, "data")  # fmt: skip
    with open(path, "rb") as f:
        good = f.read()
    return ref, path, good


def _same_size_layer(blob: bytes, data: bytes) -> bytes:
    """``blob`` (a gzip layer) with /data.txt's content replaced, recompressed and padded to
    the same size with empty gzip members (a layer is a concatenation of members)."""
    import gzip

    tar = gzip.decompress(blob).replace(GOOD, data)
    assert tar != gzip.decompress(blob)
    out = gzip.compress(tar, compresslevel=9, mtime=0)
    pad = len(blob) - len(out)
    assert pad >= 22, "the hostile layer must not be bigger than the real one"
    while pad:
        # an empty member: 10-byte header with FEXTRA, XLEN, the extra bytes, an empty
        # final deflate block (2 bytes), CRC32 and ISIZE (0): 22 bytes + the extra
        extra = min(pad - 22, 60_000) if pad - 22 <= 60_000 or pad - 22 - 60_000 >= 22 else 30_000
        member = b"\x1f\x8b\x08\x04" + b"\0" * 4 + b"\x00\xff"
        member += extra.to_bytes(2, "little") + b"k" * extra + b"\x03\x00" + b"\0" * 8
        out += member
        pad -= len(member)
    assert len(out) == len(blob) and gzip.decompress(out) == tar
    return out


def _kiln(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KILN_ROOT=str(tmp_path / "dst"))
    return subprocess.run([sys.executable, "-m", "kiln.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=240)  # fmt: skip


def _build(tmp_path, ref: str) -> subprocess.CompletedProcess:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(f"FROM {ref}\nRUN cat /data.txt\n")
    return _kiln(tmp_path, "build", "--runtime", "runc", "--tls-verify=false", "-t", "out:1",
                 str(ctx))  # fmt: skip


def _nothing_unpacked_and_clean(tmp_path) -> None:
    with Store.open(str(tmp_path / "dst")) as store:
        assert store.list_images() == []
        snaps = Snapshotter(store.snapshot_root)
        try:
            assert snaps.list_layers() == [] and snaps.list_active() == []
        finally:
            snaps.close()
        assert os.listdir(os.path.join(store.snapshot_root, "tmp")) == []
    check = _kiln(tmp_path, "system", "check", "--format", "json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["findings"] == []


def _fails_cleanly(res: subprocess.CompletedProcess, *words: str) -> None:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and all(w in last for w in words), res.stderr


def test_a_valid_layer_served_under_another_digest_is_never_used(tmp_path, registry):
    ref, path, good = _victim(tmp_path, registry)
    with open(path, "wb") as f:  # same size, a whole valid layer: only the digest differs
        f.write(_same_size_layer(good, EVIL))
    _fails_cleanly(_build(tmp_path, ref), "content does not match its descriptor", "sha256:")
    _nothing_unpacked_and_clean(tmp_path)

    with open(path, "wb") as f:
        f.write(good)
    res = _build(tmp_path, ref)
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert GOOD.decode().strip() in out and EVIL.decode().strip() not in out


def test_a_config_naming_another_diff_id_fails_the_pull_and_keeps_no_tree(tmp_path, registry):
    ref, _, _ = _victim(tmp_path, registry)
    with RegistryClient(RegistryOptions(tls_verify=False)) as client:
        parsed = Reference.parse(ref)
        raw, media_type, _ = client.get_manifest(parsed)
        manifest = Manifest.parse(raw, media_type)
        config = json.loads(client.open_blob(parsed, manifest.config.digest).read())
        config["rootfs"]["diff_ids"] = ["sha256:" + "ab" * 32]
        raw_config = json.dumps(config).encode()
        desc = Descriptor(manifest.config.media_type, Digest.of_bytes(raw_config), len(raw_config))
        import io

        client.push_blob(parsed, desc, lambda: io.BytesIO(raw_config))
        lying = Manifest.build(manifest.media_type, desc, list(manifest.layers))
        client.put_manifest(parsed, lying.raw, lying.media_type)
    _fails_cleanly(_build(tmp_path, ref), "does not match its diff_id", "sha256:" + "ab" * 32)
    _nothing_unpacked_and_clean(tmp_path)
    with Store.open(str(tmp_path / "dst")) as store:  # the pull kept none of its blobs
        assert list(store.iter_blobs()) == []
