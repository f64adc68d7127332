"""``kiln push --format v2s1``: a signed Docker schema 1 manifest that Debian's
``docker-registry`` (distribution 2.8, ``compatibility: schema1: enabled: true``) verifies
and stores, read back by skopeo and by kiln with the same layers, config and history;
and clear refusals of what schema 1 cannot carry."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from api_server import start_server, stop_server
from kiln.oci.schema1_write import EMPTY_GZIP_LAYER_DIGEST, verify

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.geteuid() != 0, reason="RUN needs root"),
    pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo is not installed"),
]
CALL_TIMEOUT = 120
DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
ENV FOO=bar PATH=/bin
RUN ["/bin/busybox", "sh", "-c", "echo hi > /hi"]
LABEL purpose=schema1
USER 1:1
CMD ["/bin/busybox", "cat", "/hi"]
"""


def kiln(root: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "kiln.cli.main", "--root", str(root), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=CALL_TIMEOUT)  # fmt: skip
    if ok:
        assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-2000:])
    return r


def skopeo(*args: str) -> bytes:
    return subprocess.run(["skopeo", *args], capture_output=True, check=True,
                          timeout=CALL_TIMEOUT).stdout  # fmt: skip


def inspect(root: Path, name: str) -> dict:
    out = json.loads(kiln(root, "inspect", name).stdout)
    return out[0] if isinstance(out, list) else out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schema1")
    ctx = tmp / "ctx"
    ctx.mkdir()
    shutil.copy("/bin/busybox", ctx / "busybox")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    root = tmp / "root"
    kiln(root, "build", "-q", "-t", "s1:gzip", str(ctx))
    kiln(root, "build", "-q", "--compression", "zstd", "-t", "s1:zstd", str(ctx))
    return tmp, root


def _oci_config(layout: Path) -> dict:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    config = manifest["config"]["digest"].split(":", 1)[1]
    return json.loads((layout / "blobs" / "sha256" / config).read_text())


def test_v2s1_push_is_signed_stored_and_reads_back_in_skopeo_and_kiln(built, registry_schema1):
    tmp, root = built
    dest = f"{registry_schema1.host}/kiln/s1:1"
    kiln(root, "push", "--tls-verify=false", "--format", "v2s1", "s1:gzip", f"docker://{dest}")
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{dest}")
    doc = json.loads(raw)
    assert doc["schemaVersion"] == 1 and doc["name"] == "kiln/s1" and doc["tag"] == "1"
    verify(raw)  # the registry verified it too, or it would not have stored it
    # metadata-only steps (ENV, LABEL, USER, CMD) point at the empty layer, as Docker's do
    sums = [f["blobSum"] for f in doc["fsLayers"]]
    assert sums.count(str(EMPTY_GZIP_LAYER_DIGEST)) == 4 and len(sums) == 6
    # the key is the store's: made once (0600), the same key ID on the next push
    key = root / "trust" / "schema1-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    kid = doc["signatures"][0]["header"]["jwk"]["kid"]
    kiln(root, "push", "--tls-verify=false", "--format", "v2s1", "s1:gzip", f"docker://{dest}x")
    raw2 = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{dest}x")
    assert json.loads(raw2)["signatures"][0]["header"]["jwk"]["kid"] == kid

    original = inspect(root, "s1:gzip")
    # skopeo converts it to OCI: same layers (throwaway ones dropped), config and history
    layout = tmp / "oci"
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{dest}", f"oci:{layout}:x")
    config = _oci_config(layout)
    assert config["rootfs"]["diff_ids"] == original["RootFS"]["Layers"]
    for key_ in ("Env", "Cmd", "User", "Labels"):
        assert config["config"][key_] == original["Config"][key_], key_
    assert [h.get("created_by") for h in config["history"]] == [
        h.get("created_by") for h in original["History"]
    ]
    # and kiln pulls it back: the same, step by step
    other = tmp / "other"
    kiln(other, "pull", "-q", "--tls-verify=false", f"docker://{dest}")
    back = inspect(other, dest)
    assert back["RootFS"] == original["RootFS"]
    assert back["Config"] == original["Config"]
    assert back["History"] == original["History"]
    assert back["Size"] == original["Size"]


def test_zstd_layers_are_recompressed_and_zstd_output_refused(built, registry_schema1):
    tmp, root = built
    dest = f"{registry_schema1.host}/kiln/zstd:1"
    r = kiln(root, "push", "--tls-verify=false", "--format", "v2s1", "--compression-format",
             "zstd", "s1:zstd", f"docker://{dest}", ok=False)  # fmt: skip
    assert r.returncode != 0 and "gzip layers only" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    kiln(root, "push", "--tls-verify=false", "--format", "v2s1", "s1:zstd", f"docker://{dest}")
    other = tmp / "zstd-back"
    kiln(other, "pull", "-q", "--tls-verify=false", f"docker://{dest}")
    assert inspect(other, dest)["RootFS"] == inspect(root, "s1:zstd")["RootFS"]


def test_what_schema1_cannot_carry_is_refused(built, registry_schema1, registry_plain):
    tmp, root = built
    kiln(root, "manifest", "create", "s1list:1", "s1:gzip")
    r = kiln(root, "push", "--tls-verify=false", "--format", "v2s1", "s1list:1",
             f"docker://{registry_schema1.host}/kiln/list:1", ok=False)  # fmt: skip
    assert r.returncode != 0 and "manifest list" in r.stderr and "schema 1" in r.stderr, r.stderr
    r = kiln(root, "push", "--format", "v2s1", "s1:gzip", f"oci:{tmp / 'layout'}", ok=False)
    assert r.returncode != 0 and "registries only" in r.stderr, r.stderr
    # a registry that does not take schema 1 (distribution's default) refuses it clearly
    r = kiln(root, "push", "--tls-verify=false", "--format", "v2s1", "s1:gzip",
             f"docker://{registry_plain.host}/kiln/nos1:1", ok=False)  # fmt: skip
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "manifest" in r.stderr.lower(), r.stderr


@pytest.mark.skipif(not shutil.which("podman"), reason="podman is not installed")
def test_podman_remote_push_format_v2s1(built, registry_schema1):
    tmp, root = built  # the server serves this store
    proc, sock = start_server(tmp)
    try:
        dest = f"docker://{registry_schema1.host}/kiln/remote:1"
        r = subprocess.run(["podman", "--url", f"unix://{sock}", "push", "--format", "v2s1",
                            "--tls-verify=false", "s1:gzip", dest], capture_output=True,
                           text=True, timeout=CALL_TIMEOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        assert r.returncode == 0, r.stderr
    finally:
        assert stop_server(proc) == 0
    raw = skopeo("inspect", "--raw", "--tls-verify=false", dest)
    assert json.loads(raw)["schemaVersion"] == 1
    verify(raw)
